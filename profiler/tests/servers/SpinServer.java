// An HTTP server for tcpprof's tests (the JDK's own com.sun.net.httpserver) whose handler spends
// its time in Java: a loop of arithmetic per request, in spin.
// Usage: java -XX:+PreserveFramePointer -Dsun.net.httpserver.nodelay=true SpinServer.java PORT
// (without nodelay the JDK's server writes its head and body apart, and Nagle's algorithm meets
// the client's delayed ACK: 40 ms per request, the server idle).
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;

public class SpinServer {
    static long spin(int n) {
        long a = 0, b = 1;
        for (int i = 0; i < n; i++) {
            long t = (a + b) % 1000003;
            a = b;
            b = t;
        }
        return a;
    }

    public static void main(String[] args) throws Exception {
        InetSocketAddress addr = new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0]));
        HttpServer server = HttpServer.create(addr, 128);
        server.createContext("/", exchange -> {
            byte[] body = (spin(300000) + "\n").getBytes();
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
    }
}
