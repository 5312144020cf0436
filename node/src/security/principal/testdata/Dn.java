import java.io.*;
import java.nio.file.*;
import java.security.cert.*;
import javax.security.auth.x500.X500Principal;
import java.util.HexFormat;
// Prints X500Principal.getName() for DER certificates or names, one per input line:
// "JAVA<TAB>cert|name<TAB>label<TAB>hex". The lines were printed from the DER the tests in
// ../tests.rs build (`dn::cases()`, `dn::multi_valued_name()`), and the output hard-coded
// there. Run: javac Dn.java && java Dn lines.txt
public class Dn {
    public static void main(String[] a) throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        for (String line : Files.readAllLines(Paths.get(a[0]))) {
            if (!line.startsWith("JAVA\t")) continue;
            String[] p = line.split("\t");
            byte[] der = HexFormat.of().parseHex(p[3]);
            X500Principal x;
            if (p[1].equals("cert")) x = ((X509Certificate) cf.generateCertificate(new ByteArrayInputStream(der))).getSubjectX500Principal();
            else x = new X500Principal(der);
            System.out.println(p[2] + "\t" + x.getName());
        }
    }
}
