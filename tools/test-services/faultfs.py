#!/usr/bin/python3
"""A pass-through FUSE file system over a folder, for tests that need a real fsync failure.

    /usr/bin/python3 faultfs.py <backing folder> <mount point>

Every operation goes to the backing folder. While the file <backing folder>/.fail-fsyncdir
exists, fsync of a folder fails with EIO (everything else still works), as on a failing disk.
While <backing folder>/.coarse exists, every *.json file reports one inode number and times cut
to the minute, as a file system with coarse stamps that reuses inode numbers can.
Prints "faultfs ready" once mounted; runs in the foreground until unmounted. Needs Debian's
fuse3 and python3-fusepy (see startFaultyFolder in src/faulty-folder.ts).
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class FaultFS(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)

    def init(self, path):
        print("faultfs ready", flush=True)

    def _path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def __call__(self, op, path, *args):
        try:
            return super().__call__(op, path if op in ("fsyncdir", "init") else self._path(path), *args)
        except OSError as error:
            raise FuseOSError(error.errno or errno.EIO)

    def access(self, path, mode):
        if not os.access(path, mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def chown(self, path, uid, gid):
        os.chown(path, uid, gid)

    def create(self, path, mode, fi=None):
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        if os.path.exists(os.path.join(self.root, ".fail-fsyncdir")):
            raise FuseOSError(errno.EIO)
        fd = os.open(self._path(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0

    def getattr(self, path, fh=None):
        st = os.lstat(path)
        attrs = {key: getattr(st, key) for key in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")}
        if path.endswith(".json") and os.path.exists(os.path.join(self.root, ".coarse")):
            attrs["st_ino"] = 424242
            for key in ("st_atime", "st_ctime", "st_mtime"):
                attrs[key] = int(attrs[key]) // 60 * 60
        return attrs

    def link(self, target, source):
        return os.link(self._path(source), target)

    def mkdir(self, path, mode):
        return os.mkdir(path, mode)

    def mknod(self, path, mode, dev):
        return os.mknod(path, mode, dev)

    def open(self, path, flags):
        return os.open(path, flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(path)

    def readlink(self, path):
        return os.readlink(path)

    def release(self, path, fh):
        return os.close(fh)

    def rename(self, old, new):
        return os.rename(old, self._path(new))

    def rmdir(self, path):
        return os.rmdir(path)

    def statfs(self, path):
        stv = os.statvfs(path)
        return {key: getattr(stv, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def symlink(self, target, source):
        return os.symlink(source, target)

    def truncate(self, path, length, fh=None):
        with open(path, "r+") as f:
            f.truncate(length)

    def unlink(self, path):
        return os.unlink(path)

    def utimens(self, path, times=None):
        return os.utime(path, times)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)


if __name__ == "__main__":
    FUSE(FaultFS(sys.argv[1]), sys.argv[2], foreground=True, nothreads=True, use_ino=True, default_permissions=True)
