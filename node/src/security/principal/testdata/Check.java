import org.apache.kafka.common.security.ssl.SslPrincipalMapper;
import java.io.*;
import java.nio.file.*;
import java.util.*;
// Reads lines "RULES<TAB>DN" (\n \t \r for line breaks and tabs, \T for a backslash) and
// prints what Kafka's SslPrincipalMapper does with them. Run against Kafka's client jar:
// javac -cp kafka-clients.jar Check.java && java -cp kafka-clients.jar:slf4j-api.jar:. Check cases.txt
public class Check {
    static String un(String s) { return s.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r").replace("\\T", "\\"); }
    public static void main(String[] a) throws Exception {
        for (String line : Files.readAllLines(Paths.get(a[0]))) {
            String[] p = line.split("\t", -1);
            String rules = un(p[0]);
            String out;
            try {
                SslPrincipalMapper m = SslPrincipalMapper.fromRules(rules);
                out = m.toString();
                if (p.length > 1) {
                    try { out += " => " + m.getName(un(p[1])); }
                    catch (Throwable t) { out += " => THROWS " + t.getClass().getSimpleName() + ": " + t.getMessage(); }
                }
            } catch (Throwable t) { out = "PARSE THROWS " + t.getClass().getSimpleName() + ": " + t.getMessage(); }
            System.out.println(line + "\n    " + out);
        }
    }
}
