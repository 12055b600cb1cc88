package io.guestmem.lock;

import io.guestmem.sys.SyscallException;
import java.util.List;

/**
 * Undoing what a pin did so far, last step first, as both kinds of pin do on failure or an uncommitted close:
 * every step is undone even when one fails; a failure joins the error that caused the rollback (suppressed)
 * or, with none, the first failure is thrown with the rest suppressed.
 */
final class Rollback {
    /** Undoes one step; returns the failure to report, or null when it was undone (or failed as expected). */
    interface Step<T> {
        SyscallException undo(T done);
    }

    private Rollback() {
    }

    /**
     * Undoes {@code done} in reverse and empties it.
     *
     * @param primary the error that caused the rollback (null for a plain close)
     * @throws SyscallException the first failure, when there is no {@code primary}
     */
    static <T> void inReverse(List<T> done, Step<T> step, Throwable primary) {
        SyscallException first = null;
        for (int i = done.size() - 1; i >= 0; i--) {
            SyscallException e = step.undo(done.get(i));
            if (e == null) continue;
            if (primary != null) primary.addSuppressed(e);
            else if (first == null) first = e;
            else first.addSuppressed(e);
        }
        done.clear();
        if (first != null) throw first;
    }
}
