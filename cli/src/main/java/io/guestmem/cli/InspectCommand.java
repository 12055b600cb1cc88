package io.guestmem.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code guestmem inspect}: the kernel's page-types, for guest memory work. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Show a process's memory as the kernel sees it: VMAs, present pages, pfns, mapping levels, flags.")
final class InspectCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        throw new UnsupportedOperationException("inspect is not implemented yet");
    }
}
