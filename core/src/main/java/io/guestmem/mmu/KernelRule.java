package io.guestmem.mmu;

/**
 * Which kernel's rule {@link FollowPfn}'s remapped step ({@code hva_to_pfn_remapped}, rows 17-21) follows, where
 * the patch this library models and the kernel that later merged differ. Chosen once, when the
 * {@link FollowPfn} is built ({@link FollowPfnOptions}); the fast and slow (GUP) steps are the same under both.
 *
 * <ul>
 * <li>{@link #V9_PATCH}: "KVM: mmu: Improve handling of non-refcounted pfns" (David Stevens, PATCH v9 3/6,
 *     2023, <a href="https://lore.kernel.org/all/?q=s%3A%22Improve+handling+of+non-refcounted+pfns%22">lore</a>).
 *     {@code hva_to_pfn_remapped} looks the struct page up ({@code kvm_pfn_to_refcounted_page}) first, then
 *     takes the RO_FAULT branch ({@code goto out}) <em>before</em> {@code get_page_unless_zero}; at {@code out:}
 *     a struct page that was not refcounted is -EFAULT unless {@code allow_non_refcounted_struct_page}, so a
 *     write fault on a read-only pte of a page with a struct page ends as KVM_PFN_ERR_FAULT, not RO_FAULT. A
 *     struct page that can be refcounted is (a reference is taken and held), and needs no MMU notifier guard.
 *     The patch has no FOLL_PIN: a pinning request ({@link FollowPfnRequest#pin}) is one whose pfn is used
 *     outside the notifier, i.e. {@code guarded_by_mmu_notifier = false}.</li>
 * <li>{@link #LINUX_6_13}: {@code hva_to_pfn_remapped} as merged in Linux 6.13 by "KVM: Disallow direct access
 *     (w/o mmu_notifier) to unpinned pfn by default" (Sean Christopherson, PATCH v13 35/85 of "KVM: Stop
 *     grabbing references to PFNMAP'd pages", 2024,
 *     <a href="https://lore.kernel.org/all/20241010182427.1434605-36-seanjc@google.com/">lore</a>) and the
 *     series around it:
 *     {@code kfp->pin && !allow_unsafe_mappings} is -EINVAL (KVM_PFN_ERR_FAULT), then
 *     {@code write_fault && !args.writable} is RO_FAULT, and otherwise the pfn is returned never refcounted
 *     ({@code kvm_resolve_pfn} with no page), struct page or not. 6.13 has neither v9 flag; a request that
 *     still sets one ({@code guardedByMmuNotifier = false}, {@code allowNonRefcountedStructPage}) is answered by
 *     v9's {@code out:} checks over 6.13's refcount rule, where nothing remapped is refcounted (the library's
 *     addition, so the two flags mean the same under both rules).</li>
 * </ul>
 */
public enum KernelRule {
    V9_PATCH,
    LINUX_6_13
}
