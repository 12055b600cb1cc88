package io.guestmem.cli;

import java.io.Console;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of a long step (prefault, a scan of a large range). Drawn on stderr, and only when the command
 * runs on a terminal: piped or redirected output (scripts, {@code --json > file}, tests) gets nothing, not
 * even a final line, so machine-read output stays clean.
 *
 * <pre>{@code try (Progress p = Progress.start("scan", totalPages, "pages")) { ...; p.step(n); }}</pre>
 */
public final class Progress implements AutoCloseable {
    private static final Progress NONE = new Progress(null);
    /** Below this many units a bar would only flicker. */
    private static final long MIN_TOTAL = 1;

    private final ProgressBar bar;

    private Progress(ProgressBar bar) {
        this.bar = bar;
    }

    /**
     * Whether progress is shown: stdin and stdout are a terminal. Since JDK 22 {@link System#console()}
     * returns a console even when redirected, so {@link Console#isTerminal()} is the real test.
     * {@code GUESTMEM_PROGRESS=0} turns it off.
     */
    public static boolean enabled() {
        if ("0".equals(System.getenv("GUESTMEM_PROGRESS"))) return false;
        Console c = System.console();
        return c != null && c.isTerminal();
    }

    /** A progress bar for {@code total} units (shown only on a terminal, else a no-op). */
    public static Progress start(String task, long total, String unit) {
        if (!enabled() || total < MIN_TOTAL) return NONE;
        ProgressBar bar = new ProgressBarBuilder()
                .setTaskName(task)
                .setInitialMax(total)
                .setUnit(" " + unit, 1)
                .setStyle(ProgressBarStyle.ASCII)
                .setConsumer(new ConsoleProgressBarConsumer(System.err))
                .setUpdateIntervalMillis(200)
                .continuousUpdate()
                .hideEta()
                .clearDisplayOnFinish()
                .build();
        return new Progress(bar);
    }

    /** Whether this instance draws anything. */
    public boolean shown() {
        return bar != null;
    }

    /** Adds {@code n} units done. */
    public void step(long n) {
        if (bar != null) bar.stepBy(n);
    }

    /** A new message beside the bar (e.g. the range being scanned). */
    public void message(String text) {
        if (bar != null) bar.setExtraMessage(text);
    }

    @Override
    public void close() {
        if (bar != null) bar.close();
    }
}
