// Beam Java expansion service bound to one address (ExpansionService.main binds all
// interfaces). Usage: LoopbackExpansionService HOST PORT [--pipelineOption=value ...]
// e.g. 127.0.0.1 8096 --defaultEnvironmentType=EMBEDDED
import java.util.Arrays;
import org.apache.beam.sdk.expansion.service.ExpansionServer;
import org.apache.beam.sdk.expansion.service.ExpansionService;

public class LoopbackExpansionService {
  public static void main(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    ExpansionService service = new ExpansionService(Arrays.copyOfRange(args, 2, args.length));
    ExpansionServer server = ExpansionServer.create(service, host, port);
    System.out.println("Expansion service listening on " + server.getHost() + ":" + server.getPort());
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        server.close();
      } catch (Exception e) {
        // exiting anyway
      }
    }));
    Thread.currentThread().join();
  }
}
