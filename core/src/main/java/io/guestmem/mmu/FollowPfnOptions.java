package io.guestmem.mmu;

import java.util.Objects;

/**
 * The construction-time settings of one {@link FollowPfn}: what KVM fixes when the module loads, fixed here
 * when the follow_pfn (one VM's) is built, never changed afterwards.
 *
 * @param rule                which kernel's remapped rule to follow ({@link KernelRule})
 * @param allowUnsafeMappings {@code kvm.allow_unsafe_mappings}: a read-only module parameter in KVM
 *                            ({@code module_param(allow_unsafe_mappings, bool, 0444)}, both in the v9 patch and in
 *                            6.13), off by default; on, PFNMAP memory may be pinned (6.13) or used without the MMU
 *                            notifier (v9)
 */
public record FollowPfnOptions(KernelRule rule, boolean allowUnsafeMappings) {

    public FollowPfnOptions {
        Objects.requireNonNull(rule, "rule");
    }

    /** The v9 patch's rule (the patch this library follows), unsafe mappings refused. */
    public static FollowPfnOptions defaults() {
        return new FollowPfnOptions(KernelRule.V9_PATCH, false);
    }

    /** {@code rule}, unsafe mappings refused. */
    public static FollowPfnOptions of(KernelRule rule) {
        return new FollowPfnOptions(rule, false);
    }

    public FollowPfnOptions withRule(KernelRule r) {
        return new FollowPfnOptions(r, allowUnsafeMappings);
    }

    public FollowPfnOptions withAllowUnsafeMappings(boolean on) {
        return new FollowPfnOptions(rule, on);
    }
}
