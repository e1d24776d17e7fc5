#!/usr/bin/python3
"""fusehang.py MOUNTPOINT - a FUSE file system of one file, "f", whose server never
answers a FLUSH: every close(2) of a descriptor of f waits until this process dies
(the kernel then aborts the connection and the close fails with ENOTCONN). What a
hostile local user with fusermount can do to a daemon that closes a descriptor they
passed it. Speaks /dev/fuse directly (root: mount(2) with fd=); prints "mounted" once
f can be opened, or "cannot: WHY" and exits 77.

Keep what touches the mount out of the test process itself: a close there would
wait too.
"""
import ctypes
import errno
import os
import struct
import sys

LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT = 1, 2, 3, 14, 15, 18, 25, 26
OPENDIR, RELEASEDIR, INTERRUPT, BATCH_FORGET = 27, 29, 36, 42
IN_HEADER = struct.Struct("<IIQQIIIHH")   # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")        # len error unique
SIZE = 1 << 20


def attr(ino):
    mode = 0o040755 if ino == 1 else 0o100644
    size = 0 if ino == 1 else SIZE
    # ino size blocks atime mtime ctime (ns x3) mode nlink uid gid rdev blksize flags
    return struct.pack("<QQQQQQIIIIIIIIII", ino, size, size // 512, 0, 0, 0, 0, 0, 0,
                       mode, 1, 0, 0, 0, 4096, 0)


def main():
    mnt = sys.argv[1]
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        print(f"cannot: /dev/fuse: {e.strerror}", flush=True)
        sys.exit(77)
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    if libc.mount(b"fusehang", mnt.encode(), b"fuse.fusehang", 2 | 4, opts) != 0:  # NOSUID|NODEV
        print(f"cannot: mount: {os.strerror(ctypes.get_errno())}", flush=True)
        sys.exit(77)

    def reply(unique, err=0, body=b""):
        os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(body), err, unique) + body)

    said = False
    while True:
        try:
            req = os.read(fd, 65536 + 4096)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.ENOENT):  # ENOENT: a request interrupted
                continue
            return  # ENODEV: unmounted
        _, op, unique, node, _, _, _, _, _ = IN_HEADER.unpack_from(req)
        arg = req[IN_HEADER.size:]
        if op == INIT:
            # major minor max_readahead flags max_background congestion max_write
            # time_gran max_pages map_alignment flags2 max_stack_depth unused[6]
            reply(unique, body=struct.pack("<IIIIHHIIHHII24x", 7, 31, 0, 0, 0, 0, 4096,
                                           1, 0, 0, 0, 0))
            if not said:  # the kernel answers opens from here on
                print("mounted", flush=True)
                said = True
        elif op == LOOKUP:
            if arg.split(b"\0")[0] != b"f":
                reply(unique, -errno.ENOENT)
            else:  # nodeid generation entry_valid attr_valid (ns x2) attr
                reply(unique, body=struct.pack("<QQQQII", 2, 0, 3600, 3600, 0, 0) + attr(2))
        elif op == GETATTR:
            reply(unique, body=struct.pack("<QII", 3600, 0, 0) + attr(node))
        elif op in (OPEN, OPENDIR):
            reply(unique, body=struct.pack("<QII", 1, 0, 0))
        elif op == READ:
            reply(unique, body=b"\0" * min(4096, struct.unpack_from("<QQI", arg)[2]))
        elif op == FLUSH:
            pass  # never answered
        elif op in (FORGET, BATCH_FORGET, INTERRUPT):
            pass  # no answer expected (an interrupt: the FLUSH still waits)
        elif op in (RELEASE, RELEASEDIR):
            reply(unique)
        else:
            reply(unique, -errno.ENOSYS)


if __name__ == "__main__":
    main()
