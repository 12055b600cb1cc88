package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import java.io.File;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.spi.ToolProvider;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A VMM project that depends on guestmem as the README's "Depending on it" says, built by Maven as a project of
 * its own and run. Its {@code pom.xml}, {@code module-info.java} and {@code Main.java} are the README's blocks,
 * exactly as they stand there. Maven compiles it offline against this build's native-bridge and core jars; its
 * dependency tree must hold core and native-bridge and no CLI library (picocli, Jackson, progressbar/JLine);
 * the program runs on the module path with native access granted to {@code io.guestmem.bridge} by name, must
 * print the line the README promises, and must print no native-access warning.
 *
 * <p>How the artifacts reach the project without touching the shared local repository (every build on the
 * machine reads and writes {@code ~/.m2}): the test lays out a private local repository in a temp directory
 * holding what {@code mvn install} would put there for guestmem, each module's jar and its pom, unchanged,
 * under {@code io/guestmem/<artifactId>/<version>/}, and the parent pom. The jars are the ones this JVM loaded,
 * i.e. the reactor's (a classes directory, when Maven stopped before {@code package}, is jarred first). Plain
 * copies instead of {@code install:install-file}, so the test needs no plugin this build has not just used.
 * Everything else (commons-lang3, the compiler and dependency plugins and what they need) comes from the
 * shared local repository, read through a settings file whose one mirror is that directory as a
 * {@code file://} repository. Maven runs {@code --offline} with {@code aether.offline.protocols=file}, so
 * that directory is the only repository it may read; what it reads is copied into the private repository,
 * which is deleted with the temp directory.
 *
 * <p>Maven runs the compiler goal itself rather than the {@code compile} phase: the phase would also run the
 * running Maven's default resources plugin, whose version differs from one Maven release to the next and
 * need not be in an offline repository.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class VmmProjectTest {
    static final List<String> CLI_LIBRARIES = List.of("info.picocli", "com.fasterxml.jackson", "me.tongfei", "org.jline");
    static final String GROUP_DIR = "io/guestmem";

    @Test
    void aVmmProjectBuildsOfflineAgainstTheArtifactsAndRuns(@TempDir Path tmp) throws Exception {
        String version = property("guestmem.version");
        Path sharedRepo = Path.of(property("guestmem.localRepository"));
        Path mvn = Path.of(property("guestmem.mavenHome"), "bin", "mvn");
        String dependencyPlugin = "org.apache.maven.plugins:maven-dependency-plugin:" + property("guestmem.dependencyPluginVersion");

        List<String> readme = Files.readAllLines(Path.of("../README.md"));
        String pom = block(readme, "pom", "```xml");
        String moduleInfo = block(readme, "module-info", "```java");
        String main = block(readme, "main", "```java");
        List<String> run = block(readme, "run", "```").lines().toList();
        assertTrue(pom.contains("<artifactId>guestmem-core</artifactId>") && pom.contains("<version>" + version + "</version>"),
                "the README's pom depends on guestmem-core " + version + ":\n" + pom);
        String module = word(moduleInfo, "module");
        String mainClass = word(main, "package").replace(";", "") + "." + word(main, "class");
        String javaLine = run.stream().filter(l -> l.startsWith("java ")).findFirst().orElseThrow();
        assertTrue(javaLine.contains("--enable-native-access=io.guestmem.bridge") && javaLine.contains("-m " + module + "/" + mainClass),
                "the README runs " + module + "/" + mainClass + " with native access for io.guestmem.bridge: " + javaLine);
        String expected = run.stream().filter(l -> l.startsWith("# ")).findFirst().orElseThrow().substring(2);

        Path project = tmp.resolve("tiny-vmm");
        Path sources = Files.createDirectories(project.resolve("src/main/java"));
        Files.writeString(project.resolve("pom.xml"), pom);
        Files.writeString(sources.resolve("module-info.java"), moduleInfo);
        Path mainFile = sources.resolve(mainClass.replace('.', '/') + ".java");
        Files.createDirectories(mainFile.getParent());
        Files.writeString(mainFile, main);

        // The private repository: guestmem as `mvn install` lays it out.
        Path repo = tmp.resolve("repository");
        Path root = Path.of("..").toAbsolutePath().normalize();
        install(repo, "guestmem-parent", version, root.resolve("pom.xml"), null);
        install(repo, "guestmem-native-bridge", version, root.resolve("native-bridge/pom.xml"), jarOf(HostRegion.class, tmp));
        install(repo, "guestmem-core", version, root.resolve("core/pom.xml"), jarOf(GuestMemory.class, tmp));
        Path settings = tmp.resolve("settings.xml");
        Files.writeString(settings, """
                <settings>
                  <mirrors>
                    <mirror><id>shared-local-repository</id><mirrorOf>*</mirrorOf><url>%s</url></mirror>
                  </mirrors>
                </settings>
                """.formatted(sharedRepo.toUri()));
        List<String> sharedBefore = listing(sharedRepo.resolve(GROUP_DIR));

        String build = run(project, Map.of("JAVA_HOME", System.getProperty("java.home")),
                mvn.toString(), "-B", "-q", "--offline", "-Daether.offline.protocols=file", "-s", settings.toString(),
                "-Dmaven.repo.local=" + repo, "compiler:compile",
                dependencyPlugin + ":tree", "-DoutputFile=tree.txt",
                dependencyPlugin + ":build-classpath", "-Dmdep.outputFile=cp.txt");

        String tree = Files.readString(project.resolve("tree.txt"));
        System.out.println("tiny VMM project's dependency tree:\n" + tree);
        assertTrue(tree.contains("io.guestmem:guestmem-core:jar:" + version + ":compile"), tree);
        assertTrue(tree.contains("io.guestmem:guestmem-native-bridge:jar:" + version + ":compile"), tree);
        for (String banned : CLI_LIBRARIES) assertFalse(tree.contains(banned), banned + " in a VMM's tree:\n" + tree);
        List<String> classpath = List.of(Files.readString(project.resolve("cp.txt")).strip().split(File.pathSeparator));
        for (String e : classpath) assertTrue(Path.of(e).startsWith(repo), "resolved outside the private repository: " + e + "\n" + build);

        String modulePath = project.resolve("target/classes") + File.pathSeparator + String.join(File.pathSeparator, classpath);
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Path err = tmp.resolve("java.err");
        String out = run(project, Map.of(), err, java.toString(), "--enable-native-access=io.guestmem.bridge",
                "-p", modulePath, "-m", module + "/" + mainClass);
        System.out.println("tiny VMM: " + out.strip());
        assertEquals(expected, out.strip());
        assertEquals("", Files.readString(err), "no warning: native access is granted to the bridge by name");
        assertEquals(sharedBefore, listing(sharedRepo.resolve(GROUP_DIR)), "the shared local repository's io.guestmem is untouched");
    }

    /** The one fenced block, opened by {@code fence}, between {@code <!-- snippet:NAME -->} and its end marker. */
    static String block(List<String> doc, String name, String fence) {
        int m0 = indexOf(doc, "<!-- snippet:" + name + " -->", 0), m1 = indexOf(doc, "<!-- /snippet:" + name + " -->", m0);
        int f0 = indexOf(doc, fence, m0), f1 = indexOf(doc, "```", f0 + 1);
        assertTrue(f1 < m1, "one " + fence + " block between the " + name + " markers of the README");
        return String.join("\n", doc.subList(f0 + 1, f1)) + "\n";
    }

    private static int indexOf(List<String> lines, String marker, int from) {
        for (int i = from; i < lines.size(); i++) if (lines.get(i).strip().equals(marker)) return i;
        throw new AssertionError("README: " + marker + " not found");
    }

    /** The token after {@code keyword} on the first line that starts with it (after modifiers for a class). */
    private static String word(String source, String keyword) {
        for (String l : source.lines().toList()) {
            List<String> t = List.of(l.strip().split("\\s+"));
            int i = t.indexOf(keyword);
            if (i >= 0 && i + 1 < t.size() && (i == 0 || keyword.equals("class"))) return t.get(i + 1);
        }
        throw new AssertionError("no '" + keyword + "' in\n" + source);
    }

    private static String property(String name) {
        String v = System.getProperty(name);
        assertTrue(v != null && !v.isBlank(), name + " is set by src-test's pom (surefire systemPropertyVariables)");
        return v;
    }

    /** What {@code mvn install} writes for one artifact: {@code <a>-<v>.pom} and, for a jar, {@code <a>-<v>.jar}. */
    private static void install(Path repo, String artifactId, String version, Path pom, Path jar) throws IOException {
        Path dir = Files.createDirectories(repo.resolve(GROUP_DIR).resolve(artifactId).resolve(version));
        Files.copy(pom, dir.resolve(artifactId + "-" + version + ".pom"));
        if (jar != null) Files.copy(jar, dir.resolve(artifactId + "-" + version + ".jar"));
    }

    /** The jar {@code c} was loaded from; a classes directory is jarred into {@code tmp} first. */
    private static Path jarOf(Class<?> c, Path tmp) throws URISyntaxException {
        Path at = Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
        if (Files.isRegularFile(at)) return at;
        Path jar = tmp.resolve(c.getSimpleName() + "-classes.jar");
        StringWriter log = new StringWriter();
        int rc = ToolProvider.findFirst("jar").orElseThrow().run(new PrintWriter(log), new PrintWriter(log),
                "--create", "--file", jar.toString(), "-C", at.toString(), ".");
        assertEquals(0, rc, "jar of " + at + ": " + log);
        return jar;
    }

    private static List<String> listing(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) return List.of();
        try (Stream<Path> s = Files.walk(dir)) {
            return s.map(p -> dir.relativize(p) + " " + p.toFile().length() + " " + p.toFile().lastModified()).sorted().toList();
        }
    }

    private static String run(Path dir, Map<String, String> env, String... cmd) throws Exception {
        return run(dir, env, null, cmd);
    }

    /** Runs {@code cmd} in {@code dir}; standard error goes to {@code err}, or joins the output when null. */
    private static String run(Path dir, Map<String, String> env, Path err, String... cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(new ArrayList<>(List.of(cmd))).directory(dir.toFile());
        pb.environment().putAll(env);
        if (err == null) pb.redirectErrorStream(true);
        else pb.redirectError(err.toFile());
        Process p = pb.start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(4, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            throw new AssertionError(String.join(" ", cmd) + " did not finish in 4 minutes");
        }
        String text = new String(out);
        String errText = err == null ? "" : Files.readString(err);
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + " failed:\n" + text + errText);
        return text;
    }
}
