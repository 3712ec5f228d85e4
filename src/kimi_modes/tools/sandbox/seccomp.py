"""The sandbox's seccomp filter: system calls sandboxed code has no business making fail with
``EPERM`` (``clone3``: ``ENOSYS``), everything else is allowed.

Compiled with libseccomp (``libseccomp.so.2``, Debian/Ubuntu ``libseccomp2``, present wherever
systemd is) through ``ctypes``, into the classic BPF program bubblewrap's ``--seccomp FD``
loads just before it execs the sandbox's first program; it holds for every process of the
sandbox and cannot be removed (a filter can only be added to). :data:`DENIED` lists the
calls, :data:`DENIED_WHEN` the calls refused for some arguments only.

Callers may rely on: :func:`program` returns the same bytes for the life of the process, or
raises :class:`SeccompUnavailable` (no libseccomp) — the sandbox then runs without a filter
and says so in the log; :func:`program_fd` gives a descriptor bubblewrap can read it from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import platform
import tempfile

__all__ = ["DENIED", "DENIED_WHEN", "SeccompUnavailable", "program", "program_fd",
           "syscall_number"]

#: Refused with EPERM whatever their arguments: other processes' memory and tracing, the
#: kernel keyring, mounts and root changes, swap, reboot and kexec, kernel modules, eBPF and
#: perf, userfaultfd and io_uring (kernel attack surface sandboxed code does not need),
#: joining namespaces, file handles, and clock, accounting and I/O-port privileges.
DENIED: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "keyctl", "add_key", "request_key",
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "setns", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "acct", "quotactl",
    "quotactl_fd", "syslog", "vhangup", "uselib", "iopl", "ioperm",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
)

#: ``CLONE_NEW*``: new namespaces (mount, cgroup, UTS, IPC, user, pid, net, time).
NAMESPACE_FLAGS: tuple[int, ...] = (0x00020000, 0x02000000, 0x04000000, 0x08000000,
                                    0x10000000, 0x20000000, 0x40000000, 0x00000080)
_TIOCSTI = 0x5412  # push characters into a terminal's input
_TIOCLINUX = 0x541C  # the console's selection (can also push input)
#: ``personality`` flags that change the address space: ADDR_NO_RANDOMIZE, FDPIC_FUNCPTRS,
#: MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, READ_IMPLIES_EXEC, ADDR_LIMIT_32BIT, ADDR_LIMIT_3GB.
PERSONALITY_FLAGS: tuple[int, ...] = (0x0040000, 0x0080000, 0x0100000, 0x0200000, 0x0400000,
                                      0x0800000, 0x8000000)

#: Refused with EPERM for some arguments: ``(call, argument index, mask, value)``, refused
#: when ``argument & mask == value``: ``unshare`` and ``clone`` making any new namespace,
#: ``ioctl`` TIOCSTI and TIOCLINUX (the command compared as the 32 bits the kernel reads),
#: ``personality`` setting any flag that changes the address space (disabling ASLR, say). The
#: query ``personality(0xffffffff)`` has every bit set and is refused too: libseccomp cannot
#: compare one argument twice in a rule, so there is no "all but this value".
DENIED_WHEN: tuple[tuple[str, int, int, int], ...] = (
    *(("personality", 0, flag, flag) for flag in PERSONALITY_FLAGS),
    *(("unshare", 0, flag, flag) for flag in NAMESPACE_FLAGS),
    *(("clone", 0, flag, flag) for flag in NAMESPACE_FLAGS),
    ("ioctl", 1, 0xFFFFFFFF, _TIOCSTI),
    ("ioctl", 1, 0xFFFFFFFF, _TIOCLINUX),
)

_ACT_ALLOW = 0x7FFF0000
_CMP_MASKED_EQ = 7
_NR_ERROR = -1


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SeccompUnavailable(RuntimeError):
    """libseccomp cannot be loaded here (or refused the filter); the message says why."""


class _ArgCmp(ctypes.Structure):
    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(
            f"libseccomp is not installed ({exc}; Debian/Ubuntu: libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp))
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return lib


def syscall_number(name: str) -> int | None:
    """The native number of system call ``name``, or ``None`` when this architecture has no
    such call. Raises :class:`SeccompUnavailable`."""
    nr = int(_lib().seccomp_syscall_resolve_name(name.encode()))
    return None if nr < 0 else nr


def _rule(ctx: int, action: int, name: str, *conditions: tuple[int, int, int, int]) -> None:
    lib = _lib()
    nr = int(lib.seccomp_syscall_resolve_name(name.encode()))
    if nr == _NR_ERROR:
        return  # not a call libseccomp knows of: no architecture here has it
    array = (_ArgCmp * max(1, len(conditions)))(*(_ArgCmp(*c) for c in conditions))
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conditions), array)
    if rc != 0:
        raise SeccompUnavailable(
            f"libseccomp refused the rule for {name}: {os.strerror(-rc)}")


@functools.cache
def program() -> bytes:
    """The compiled filter (BPF instructions for the native architecture and, on x86-64, its
    32-bit and x32 ABIs too, so ``int 0x80`` finds the same rules; any other architecture's
    calls kill the process). Raises :class:`SeccompUnavailable`."""
    lib = _lib()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        if platform.machine() == "x86_64":
            for arch in (b"x86", b"x32"):
                token = lib.seccomp_arch_resolve_name(arch)
                if token and lib.seccomp_arch_add(ctx, token) not in (0, -errno.EEXIST):
                    raise SeccompUnavailable(f"libseccomp cannot add architecture {arch!r}")
        eperm = _act_errno(errno.EPERM)
        for name in DENIED:
            _rule(ctx, eperm, name)
        for name, arg, mask, value in DENIED_WHEN:
            if name == "clone" and platform.machine().startswith("s390"):
                continue  # clone's flags are its second argument there
            _rule(ctx, eperm, name, (arg, _CMP_MASKED_EQ, mask, value))
        # clone3 passes its flags in memory a filter cannot read: ENOSYS makes the C library
        # fall back to clone, whose flags it can.
        _rule(ctx, _act_errno(errno.ENOSYS), "clone3")
        with tempfile.TemporaryFile() as out:
            rc = lib.seccomp_export_bpf(ctx, out.fileno())
            if rc != 0:
                raise SeccompUnavailable(f"seccomp_export_bpf: {os.strerror(-rc)}")
            out.seek(0)
            return out.read()
    finally:
        lib.seccomp_release(ctx)


def program_fd(code: bytes) -> int:
    """A new descriptor (close-on-exec, at offset 0) to read ``code`` from: what bubblewrap's
    ``--seccomp`` reads. The caller passes it to the child and closes it."""
    fd = os.memfd_create("kimi-sandbox-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, code)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
