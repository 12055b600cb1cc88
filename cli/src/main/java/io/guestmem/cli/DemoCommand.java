package io.guestmem.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code guestmem demo}: build a VM memory map over every backing the machine offers and verify it. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Map guest RAM over every backing this machine offers, run a tiny KVM guest, follow every gfn to its pfn and verify it.")
final class DemoCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        throw new UnsupportedOperationException("demo is not implemented yet");
    }
}
