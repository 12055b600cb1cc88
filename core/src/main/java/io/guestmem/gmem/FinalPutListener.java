package io.guestmem.gmem;

import io.guestmem.mmu.Mappability;

/**
 * Hears a deferred conversion finish: the library's last reference to a {@link Mappability#NONE} page was
 * released and the page became {@code now} (the mappability series' {@code kvm_gmem_handle_folio_put}, cited in
 * {@link GuestMemfdRegion}). Called on the releasing thread, after the page's state changed and a page
 * turning private was zapped from the host mapping; must be quick and must not throw.
 */
@FunctionalInterface
public interface FinalPutListener {
    void conversionCompleted(GuestMemfdRegion region, long offset, Mappability now);
}
