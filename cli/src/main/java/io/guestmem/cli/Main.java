package io.guestmem.cli;

/** Entry point of the {@code guestmem} command (placeholder until the CLI lands). */
public final class Main {
    public static void main(String[] args) {
        System.out.println("guestmem: CLI not built yet");
    }
}
