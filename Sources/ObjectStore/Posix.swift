#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Thin wrappers over the system calls the store uses. All of them block: call them only on the
/// thread pool. Each throws ``SystemCallError`` and retries on EINTR.
enum Posix {
    static func fail(_ call: String, _ path: String? = nil) -> SystemCallError {
        SystemCallError(call: call, errno: errno, path: path)
    }

    static func open(_ path: String, _ flags: CInt, mode: mode_t = 0o644) throws -> CInt {
        while true {
            let fd = path.withCString { systemOpen($0, flags | O_CLOEXEC, mode) }
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw fail("open", path)
        }
    }

    /// Opens a file for reading; returns nil if it does not exist.
    static func openIfExists(_ path: String) throws -> CInt? {
        do {
            return try open(path, O_RDONLY)
        } catch let error as SystemCallError where error.errno == ENOENT || error.errno == ENOTDIR {
            return nil
        }
    }

    static func close(_ fd: CInt) {
        // On Linux the descriptor is released even on EINTR: never retry.
        _ = systemClose(fd)
    }

    static func writeAll(_ fd: CInt, _ buffer: UnsafeRawBufferPointer, path: String? = nil) throws {
        guard var base = buffer.baseAddress else { return }
        var remaining = buffer.count
        while remaining > 0 {
            let n = systemWrite(fd, base, remaining)
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("write", path)
            }
            remaining -= n
            base += n
        }
    }

    /// Reads up to `buffer.count` bytes at `offset`, looping until full or EOF. Returns bytes read.
    static func preadFull(_ fd: CInt, _ buffer: UnsafeMutableRawBufferPointer, offset: Int, path: String? = nil)
        throws -> Int
    {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = systemPread(fd, base + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("pread", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Starts asynchronous writeback of a byte range (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the
    /// fsync at commit finds little left to write. Best effort: errors are ignored, and it does nothing where
    /// the call does not exist. Looked up at run time because Swift's Glibc module does not import it.
    static func startWriteback(_ fd: CInt, offset: Int, length: Int) {
        guard let syncFileRange = Self.syncFileRange else { return }
        _ = syncFileRange(fd, Int64(offset), Int64(length), 2)  // SYNC_FILE_RANGE_WRITE
    }

    private typealias SyncFileRange = @convention(c) (CInt, Int64, Int64, UInt32) -> CInt

    private static let syncFileRange: SyncFileRange? = {
        #if os(Linux)
            guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "sync_file_range") else {
                return nil
            }
            return unsafeBitCast(symbol, to: SyncFileRange.self)
        #else
            return nil
        #endif
    }()

    static func fsync(_ fd: CInt, path: String? = nil) throws {
        while systemFsync(fd) != 0 {
            if errno == EINTR { continue }
            throw fail("fsync", path)
        }
    }

    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        do {
            try fsync(fd, path: path)
        } catch let error as SystemCallError where error.errno == EINVAL || error.errno == EBADF {
            // Some file systems do not support fsync on directories.
        }
    }

    static func fileSize(_ fd: CInt, path: String? = nil) throws -> Int {
        var st = stat()
        while fstat(fd, &st) != 0 {
            if errno == EINTR { continue }
            throw fail("fstat", path)
        }
        return Int(st.st_size)
    }

    static func rename(_ from: String, _ to: String) throws {
        let rc = from.withCString { f in to.withCString { t in systemRename(f, t) } }
        if rc != 0 { throw fail("rename", to) }
    }

    /// A second name for `path`'s file; false when there is no such file or the file system has no hard links.
    static func link(_ path: String, as newPath: String) -> Bool {
        path.withCString { f in newPath.withCString { t in systemLink(f, t) } } == 0
    }

    /// Removes a file; returns false if it did not exist.
    @discardableResult
    static func unlink(_ path: String) throws -> Bool {
        if path.withCString({ systemUnlink($0) }) == 0 { return true }
        if errno == ENOENT { return false }
        throw fail("unlink", path)
    }

    /// Creates a directory; returns false if it already existed.
    @discardableResult
    static func mkdir(_ path: String, mode: mode_t = 0o755) throws -> Bool {
        if path.withCString({ systemMkdir($0, mode) }) == 0 { return true }
        if errno == EEXIST { return false }
        throw fail("mkdir", path)
    }

    static func rmdir(_ path: String) throws {
        if path.withCString({ systemRmdir($0) }) != 0 { throw fail("rmdir", path) }
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        guard path.withCString({ lstat($0, &st) }) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names in a directory (without `.` and `..`); empty if it does not exist.
    static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = path.withCString({ opendir($0) }) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw fail("opendir", path)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw fail("readdir", path) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.bindMemory(to: CChar.self)
                return String(cString: bytes.baseAddress!)
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }

    /// `rm -rf path` (does not follow symlinks). Missing paths are fine.
    static func removeTree(_ path: String) throws {
        var st = stat()
        guard path.withCString({ lstat($0, &st) }) == 0 else {
            if errno == ENOENT { return }
            throw fail("lstat", path)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in try listDirectory(path) {
                try removeTree(path + "/" + name)
            }
            if path.withCString({ systemRmdir($0) }) != 0, errno != ENOENT { throw fail("rmdir", path) }
        } else {
            try unlink(path)
        }
    }

    /// Copies `length` bytes from `source` at `sourceOffset` to the current position of `destination`.
    /// Uses `sendfile` (in-kernel) on Linux, a user-space loop elsewhere or as a fallback.
    static func copy(
        from source: CInt, sourceOffset: Int, length: Int, to destination: CInt, bufferSize: Int,
        path: String? = nil
    ) throws {
        var offset = sourceOffset
        var remaining = length
        #if os(Linux)
            var inKernel = true
            while remaining > 0 && inKernel {
                var off = off_t(offset)
                let n = sendfile(destination, source, &off, min(remaining, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP {
                        inKernel = false
                        break
                    }
                    throw fail("sendfile", path)
                }
                if n == 0 { throw SystemCallError(call: "sendfile (unexpected end of file)", errno: EIO, path: path) }
                offset += n
                remaining -= n
            }
        #endif
        if remaining == 0 { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4096, bufferSize), alignment: 16)
        defer { buffer.deallocate() }
        while remaining > 0 {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(remaining, buffer.count)])
            let n = try preadFull(source, chunk, offset: offset, path: path)
            if n == 0 { throw SystemCallError(call: "pread (unexpected end of file)", errno: EIO, path: path) }
            try writeAll(destination, UnsafeRawBufferPointer(rebasing: chunk[0..<n]), path: path)
            offset += n
            remaining -= n
        }
    }

    /// Bytes available to the store's user on the file system holding `path`, and the file system's size.
    static func space(_ path: String) throws -> (available: Int, capacity: Int) {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { throw fail("statvfs", path) }
        let unit = Int(info.f_frsize)
        return (Int(info.f_bavail) * unit, Int(info.f_blocks) * unit)
    }

    /// Wall-clock time in nanoseconds since 1970.
    static func nowNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

// Unambiguous names for the C functions (the enum's static methods shadow them).
#if canImport(Glibc) || canImport(Musl) || canImport(Darwin)
    private func systemOpen(_ path: UnsafePointer<CChar>, _ flags: CInt, _ mode: mode_t) -> CInt {
        open(path, flags, mode)
    }
    private func systemClose(_ fd: CInt) -> CInt { close(fd) }
    private func systemWrite(_ fd: CInt, _ buf: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buf, count) }
    private func systemPread(_ fd: CInt, _ buf: UnsafeMutableRawPointer, _ count: Int, _ offset: off_t) -> Int {
        pread(fd, buf, count, offset)
    }
    private func systemFsync(_ fd: CInt) -> CInt { fsync(fd) }
    private func systemRename(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> CInt { rename(from, to) }
    private func systemUnlink(_ path: UnsafePointer<CChar>) -> CInt { unlink(path) }
    private func systemLink(_ from: UnsafePointer<CChar>, _ to: UnsafePointer<CChar>) -> CInt { link(from, to) }
    private func systemMkdir(_ path: UnsafePointer<CChar>, _ mode: mode_t) -> CInt { mkdir(path, mode) }
    private func systemRmdir(_ path: UnsafePointer<CChar>) -> CInt { rmdir(path) }
#endif
