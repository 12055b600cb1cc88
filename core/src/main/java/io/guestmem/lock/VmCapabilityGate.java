package io.guestmem.lock;

import io.guestmem.KvmException;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * VM-level capabilities that must not be enabled while memslots are locked, and the enabling of them:
 * {@code kvm_vm_ioctl_enable_cap} in "KVM: arm64: Implement the memslot lock/unlock
 * functionality" (RFC PATCH v5 03/38, see {@link MemslotLock}) refuses {@code KVM_CAP_ARM_MTE} with EINVAL when
 * {@code kvm_arm_has_locked_memslots}, because the tags of locked pages were (not) scrubbed when they were
 * locked and the guest would see unsanitised tags. {@link #MTE} is forbidden by default; others can be added.
 *
 * <p>{@link #enableCapability} holds the slot lock's operation lock while it checks and enables, so no slot
 * can become locked in between. Enabling is recorded here (this class does not issue KVM_ENABLE_CAP: a VMM
 * calls its real enable through {@link #enableCapability(String, Runnable)}).
 */
public final class VmCapabilityGate {
    /** {@code KVM_CAP_ARM_MTE}. */
    public static final String MTE = "KVM_CAP_ARM_MTE";

    private final MemslotLock lock;
    private final Map<String, String> forbidden = new ConcurrentHashMap<>();
    private final Map<String, Boolean> enabled = new LinkedHashMap<>();

    public VmCapabilityGate(MemslotLock lock) {
        this.lock = lock;
        forbidden.put(MTE, "locked pages were prepared (tags scrubbed) at lock time without MTE, so the guest"
                + " would see unsanitised tags; unlock all memslots first");
    }

    /** Forbids {@code capability} while any slot is locked; {@code why} goes into the refusal. */
    public VmCapabilityGate forbidWhileLocked(String capability, String why) {
        forbidden.put(capability, why);
        return this;
    }

    /** {@link #enableCapability(String, Runnable)} with nothing else to do. */
    public void enableCapability(String capability) {
        enableCapability(capability, () -> {});
    }

    /**
     * Enables {@code capability}: runs {@code enable} (the real KVM_ENABLE_CAP, if any) and records it.
     *
     * @throws KvmException EINVAL naming the locked slots and the reason when the capability is forbidden
     *                      while slots are locked and some are
     */
    public void enableCapability(String capability, Runnable enable) {
        String op = "enableCapability(" + capability + ")";
        String why = forbidden.get(capability);
        Runnable doIt = () -> {
            enable.run();
            synchronized (enabled) {
                enabled.put(capability, Boolean.TRUE);
            }
        };
        if (why == null) doIt.run();
        else lock.whileNoneLocked(op, why, doIt);
    }

    public boolean isEnabled(String capability) {
        synchronized (enabled) {
            return enabled.containsKey(capability);
        }
    }

    public Set<String> enabled() {
        synchronized (enabled) {
            return Set.copyOf(enabled.keySet());
        }
    }
}
