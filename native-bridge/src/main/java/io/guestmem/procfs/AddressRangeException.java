package io.guestmem.procfs;

/**
 * A read asked for entries the kernel does not have: virtual pages past the end of the process's address
 * space (pagemap answers with a short read there), or pfns past the last pfn the kernel exports in
 * {@code /proc/kpageflags} / {@code /proc/kpagecount}.
 */
public class AddressRangeException extends ProcfsException {
    public AddressRangeException(String message) {
        super(message);
    }
}
