import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.stream.Stream;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * Sums the surefire reports the arm64 guest copied out (one folder per module) and lists every failure,
 * error and skip with its reason. Run with the JDK's source launcher: java SurefireSummary.java DIR LABEL.
 * Details go to stderr; the one summary line to stdout. Exits 1 when anything failed or nothing ran.
 */
public final class SurefireSummary {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        String label = args[1];
        var perModule = new TreeMap<String, int[]>();
        List<String> failures = new ArrayList<>(), skips = new ArrayList<>();
        List<Path> files;
        try (Stream<Path> s = Files.exists(dir) ? Files.walk(dir) : Stream.empty()) {
            files = s.filter(p -> p.getFileName().toString().matches("TEST-.*\\.xml")).sorted().toList();
        }
        var dbf = DocumentBuilderFactory.newInstance();
        for (Path f : files) {
            String module = dir.relativize(f).getName(0).toString();
            Element suite = dbf.newDocumentBuilder().parse(f.toFile()).getDocumentElement();
            int[] t = perModule.computeIfAbsent(module, m -> new int[3]);
            NodeList cases = suite.getElementsByTagName("testcase");
            for (int i = 0; i < cases.getLength(); i++) {
                Element c = (Element) cases.item(i);
                String name = module + " " + c.getAttribute("classname") + "#" + c.getAttribute("name");
                t[0]++;
                Element bad = first(c, "failure", "error");
                Element skip = first(c, "skipped");
                if (bad != null) {
                    t[1]++;
                    failures.add(name + ": " + bad.getTagName() + " " + oneLine(bad.getAttribute("type") + ": "
                            + (bad.hasAttribute("message") ? bad.getAttribute("message") : bad.getTextContent())));
                } else if (skip != null) {
                    t[2]++;
                    skips.add(name + ": " + oneLine(skip.hasAttribute("message") ? skip.getAttribute("message") : skip.getTextContent()));
                }
            }
        }
        int run = 0, failed = 0, skipped = 0;
        for (var e : perModule.entrySet()) {
            int[] t = e.getValue();
            System.err.printf("%s %-14s %4d run, %d failed, %d skipped%n", label, e.getKey(), t[0], t[1], t[2]);
            run += t[0]; failed += t[1]; skipped += t[2];
        }
        for (String f : failures) System.err.println(label + " FAILED  " + f);
        for (String s : skips) System.err.println(label + " SKIPPED " + s);
        System.out.println(label + ": " + run + " run, " + failed + " failed, " + skipped + " skipped");
        System.exit(failed > 0 || run == 0 ? 1 : 0);
    }

    private static Element first(Element c, String... tags) {
        for (String tag : tags) {
            NodeList l = c.getElementsByTagName(tag);
            if (l.getLength() > 0) return (Element) l.item(0);
        }
        return null;
    }

    private static String oneLine(String s) {
        String t = s.strip().replaceAll("\\s*\\n\\s*", " | ");
        return t.length() > 300 ? t.substring(0, 300) + " ..." : t;
    }
}
