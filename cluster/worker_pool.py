"""Beam Python SDK worker pool for --environment_type=EXTERNAL, bound to loopback only.

apache_beam.runners.worker.worker_pool_main listens on [::]:PORT (all interfaces); this
wrapper rewrites that bind address to 127.0.0.1 and then runs worker_pool_main unchanged.
Usage: python cluster/worker_pool.py --service_port=50000
Workers are started as `python -c ...` from PATH: put the venv's bin first on PATH.
"""
import grpc._server

_add_insecure_port = grpc._server._Server.add_insecure_port


def _loopback_only(self, address):
    host, _, port = address.rpartition(":")
    if host in ("[::]", "0.0.0.0", ""):
        address = "127.0.0.1:" + port
    return _add_insecure_port(self, address)


grpc._server._Server.add_insecure_port = _loopback_only

if __name__ == "__main__":
    from apache_beam.runners.worker import worker_pool_main

    worker_pool_main.main()
