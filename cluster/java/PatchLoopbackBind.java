// Makes Beam's default gRPC ServerFactory bind the address it is given instead of all
// interfaces: in ServerFactory$InetSocketAddressServerFactory.createServer(List, InetSocketAddress)
// the call NettyServerBuilder.forPort(socket.getPort()) becomes NettyServerBuilder.forAddress(socket).
// Beam's job/artifact servers (--job-host) and the Fn API servers that the Flink TaskManager opens
// for SDK workers (InetAddress.getLoopbackAddress()) then listen on 127.0.0.1 only.
// Usage: PatchLoopbackBind IN_JAR OUT_JAR   (IN_JAR: beam-sdks-java-core; OUT_JAR: patched copy)
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Enumeration;
import java.util.HashSet;
import java.util.Set;
import java.util.jar.JarFile;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.apache.flink.shaded.asm9.org.objectweb.asm.ClassReader;
import org.apache.flink.shaded.asm9.org.objectweb.asm.ClassVisitor;
import org.apache.flink.shaded.asm9.org.objectweb.asm.ClassWriter;
import org.apache.flink.shaded.asm9.org.objectweb.asm.MethodVisitor;
import org.apache.flink.shaded.asm9.org.objectweb.asm.Opcodes;

public class PatchLoopbackBind {
  static final String ENTRY = "org/apache/beam/sdk/fn/server/ServerFactory$InetSocketAddressServerFactory.class";

  public static void main(String[] args) throws Exception {
    byte[] original;
    try (JarFile jar = new JarFile(args[0]); InputStream in = jar.getInputStream(jar.getEntry(ENTRY))) {
      original = in.readAllBytes();
    }
    ClassReader reader = new ClassReader(original);
    ClassWriter writer = new ClassWriter(reader, 0);
    int[] patched = {0};
    reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
      @Override
      public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] exc) {
        MethodVisitor mv = super.visitMethod(access, name, desc, sig, exc);
        boolean target = name.equals("createServer") && (access & Opcodes.ACC_STATIC) != 0
            && desc.startsWith("(Ljava/util/List;Ljava/net/InetSocketAddress;)");
        if (!target) {
          return mv;
        }
        return new MethodVisitor(Opcodes.ASM9, mv) {
          @Override
          public void visitMethodInsn(int op, String owner, String mname, String mdesc, boolean itf) {
            if (op == Opcodes.INVOKESTATIC && owner.endsWith("/io/grpc/netty/NettyServerBuilder")
                && mname.equals("forPort") && mdesc.startsWith("(I)")) {
              super.visitInsn(Opcodes.POP);             // drop socket.getPort()
              super.visitVarInsn(Opcodes.ALOAD, 1);     // the InetSocketAddress argument
              super.visitMethodInsn(op, owner, "forAddress",
                  "(Ljava/net/SocketAddress;)" + mdesc.substring(3), itf);
              patched[0]++;
            } else {
              super.visitMethodInsn(op, owner, mname, mdesc, itf);
            }
          }
        };
      }
    }, 0);
    if (patched[0] != 1) {
      throw new IllegalStateException("expected 1 forPort call in createServer, found " + patched[0]);
    }
    byte[] replacement = writer.toByteArray();
    // copy the jar, replacing that one class (the jar has duplicate directory entries: skip repeats)
    Set<String> seen = new HashSet<>();
    try (JarFile jar = new JarFile(args[0]);
        OutputStream file = Files.newOutputStream(Path.of(args[1]));
        ZipOutputStream out = new ZipOutputStream(file)) {
      for (Enumeration<? extends ZipEntry> e = jar.entries(); e.hasMoreElements(); ) {
        ZipEntry entry = e.nextElement();
        if (!seen.add(entry.getName())) {
          continue;
        }
        out.putNextEntry(new ZipEntry(entry.getName()));
        if (entry.getName().equals(ENTRY)) {
          out.write(replacement);
        } else if (!entry.isDirectory()) {
          try (InputStream in = jar.getInputStream(entry)) {
            in.transferTo(out);
          }
        }
        out.closeEntry();
      }
    }
    System.out.println("patched " + ENTRY + " into " + args[1]);
  }
}
