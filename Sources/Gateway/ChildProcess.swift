// Hand-written rather than swiftlang/swift-subprocess (1.0.2, the version on this machine; it builds here with
// Swift 6.3.1, tools 6.2, macOS 13), checked against its Linux sources (issue 18, part 5). It keeps process groups
// (`PlatformOptions.processGroupID = 0`), stdin from /dev/null, inherited stdout/stderr, closefrom(3), the signal
// mask; it is not slower. But on Linux:
// - its `TerminationStatus.signaled` drops the core-dump bit: "signal: aborted (core dumped)" in Lambda's words
//   would be lost.
// - it reaps the leader itself once `run`'s closure returns: the rest of the group can be killed while the leader's
//   zombie still holds the pid only by a closure that waits (waitid WNOWAIT, on a thread of its own) as `reap()`
//   below does, so the reaper thread would stay anyway.
// - no `nice` or SCHED_IDLE hook (`preSpawnProcessConfigurator` is Darwin and Windows only) and `run` spawns on
//   whatever thread the calling task is on: workers would be exec'd through /usr/bin/nice and chrt --idle.
// - it starts a process only inside an async, scoped `run { execution in … }`, where FunctionDispatcher.launch
//   spawns synchronously under its lock (so a stop cannot miss a worker just started): the launch would move.
// Spawn → exit of /bin/true, 200 alternating rounds, release build, on the shared 2-core machine (medians of three
// runs, load 6-16): here 0.63, 1.68, 3.87 ms, swift-subprocess 0.73, 0.94, 3.29 ms; at nice 10, here (a niced
// thread spawns) 3.4, 6.5, 6.7 ms, through /usr/bin/nice -n 10 5.6, 1.7, 4.1 ms.

import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// How a worker process ended, in the words Lambda uses ("exit status 1", "signal: killed").
struct ProcessExit: Sendable, Hashable, CustomStringConvertible {
    enum Reason: Sendable, Hashable {
        case exited(code: Int32)
        case signaled(signal: Int32, coreDumped: Bool)
    }

    let reason: Reason

    init(waitStatus status: Int32) {
        let low = status & 0x7f
        if low == 0 {
            reason = .exited(code: (status >> 8) & 0xff)
        } else {
            reason = .signaled(signal: low, coreDumped: status & 0x80 != 0)
        }
    }

    init(reason: Reason) { self.reason = reason }

    public var description: String {
        switch reason {
        case .exited(let code):
            return "exit status \(code)"
        case .signaled(let signal, let coreDumped):
            return "signal: \(Self.signalName(signal))" + (coreDumped ? " (core dumped)" : "")
        }
    }

    /// Go's `syscall.Signal.String()` names, which Lambda's messages show.
    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: "hangup"
        case SIGINT: "interrupt"
        case SIGQUIT: "quit"
        case SIGILL: "illegal instruction"
        case SIGTRAP: "trace/breakpoint trap"
        case SIGABRT: "aborted"
        case SIGBUS: "bus error"
        case SIGFPE: "floating point exception"
        case SIGKILL: "killed"
        case SIGUSR1: "user defined signal 1"
        case SIGSEGV: "segmentation fault"
        case SIGUSR2: "user defined signal 2"
        case SIGPIPE: "broken pipe"
        case SIGALRM: "alarm clock"
        case SIGTERM: "terminated"
        case SIGSYS: "bad system call"
        case SIGXCPU: "CPU time limit exceeded"
        case SIGXFSZ: "file size limit exceeded"
        default: "signal \(signal)"
        }
    }
}

/// A worker process started with posix_spawn in its own process group, reaped by a dedicated thread
/// (never on the cooperative pool). Signals go to the whole group, and only while the leader has not been
/// reaped, so a recycled pid is never signalled.
final class ChildProcess: Sendable {
    let pid: pid_t
    private let state: Mutex<State>

    private enum State {
        case running(waiters: [CheckedContinuation<ProcessExit, Never>])
        case exited(ProcessExit)
    }

    private init(pid: pid_t) {
        self.pid = pid
        self.state = Mutex(.running(waiters: []))
    }

    /// Starts `executable` (an absolute path) with `arguments` (argv[1...]), exactly `environment`, in
    /// `directory`, stdin from /dev/null, stdout and stderr inherited, every other descriptor closed,
    /// default signal dispositions and an empty signal mask, as leader of a new process group, at `nice` and,
    /// if `idle`, under SCHED_IDLE.
    static func spawn(
        executable: String, arguments: [String], environment: [String: String], directory: String, nice: Int = 0,
        idle: Bool = false
    ) throws(GatewayError) -> ChildProcess {
        var fileActions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&fileActions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&fileActions)
            posix_spawnattr_destroy(&attributes)
        }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        _ = SpawnExtensions.closeFrom?(&fileActions, 3)
        guard let addChdir = SpawnExtensions.chdir else {
            throw GatewayError(
                .spawnFailed, "posix_spawn_file_actions_addchdir_np is not available (glibc ≥ 2.29 needed)")
        }
        let chdirResult = directory.withCString { addChdir(&fileActions, $0) }
        guard chdirResult == 0 else {
            throw GatewayError(
                .spawnFailed, "cannot set the working directory: \(String(cString: strerror(chdirResult)))")
        }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        let flags = Int32(POSIX_SPAWN_SETPGROUP) | Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let result = onThread(nice: nice, idle: idle) {
            argv.withUnsafeBufferPointer { argvBuffer in
                envp.withUnsafeBufferPointer { envpBuffer in
                    posix_spawn(
                        &pid, executable, &fileActions, &attributes, argvBuffer.baseAddress!, envpBuffer.baseAddress!)
                }
            }
        }
        guard result == 0 else {
            throw GatewayError(
                .spawnFailed, "cannot start \(executable): \(String(cString: strerror(result)))",
                underlying: POSIXErrorCode(rawValue: result).map { POSIXError($0) })
        }
        let child = ChildProcess(pid: pid)
        let reaper = Thread { child.reap() }
        reaper.name = "cinescale-reaper-\(pid)"
        reaper.stackSize = 256 * 1024
        reaper.start()
        return child
    }

    /// Runs `body` here, or with a `nice` above 0 or `idle` on a thread of its own that first lowers its
    /// priority: on Linux the nice value and the scheduling policy belong to a thread, and the process
    /// posix_spawn makes (and every thread it starts) inherits the spawning thread's. The gateway's own threads
    /// keep theirs (raising a priority back needs privileges).
    private static func onThread(nice: Int, idle: Bool, _ body: () -> Int32) -> Int32 {
        guard nice > 0 || idle else { return body() }
        return withoutActuallyEscaping(body) { body in
            let work = NicedWork(body: body, nice: Int32(nice), idle: idle)
            let thread = Thread { work.run() }
            thread.stackSize = 256 * 1024
            thread.start()
            work.done.wait()
            return work.result
        }
    }

    /// The spawn handed to the niced thread. It drops the closure before signalling, so nothing holds it once
    /// `onThread` returns (the thread object itself may live a little longer).
    // @unchecked: `body` and `result` are written by the niced thread before it signals `done` and read by the
    // spawner only after waiting on it (the semaphore orders the accesses).
    private final class NicedWork: @unchecked Sendable {
        var body: (() -> Int32)?
        let nice: Int32
        let idle: Bool
        var result: Int32 = 0
        let done = DispatchSemaphore(value: 0)

        init(body: @escaping () -> Int32, nice: Int32, idle: Bool) {
            self.body = body
            self.nice = nice
            self.idle = idle
        }

        func run() {
            var parameters = sched_param(sched_priority: 0)
            if nice > 0, setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice) != 0 {
                result = errno
            } else if idle, sched_setscheduler(0, Self.schedIdle, &parameters) != 0 {
                result = errno
            } else {
                result = body!()
            }
            body = nil
            done.signal()
        }

        /// SCHED_IDLE from <sched.h> (5 on Linux), which Glibc's module does not export (it is under
        /// _GNU_SOURCE).
        static let schedIdle: Int32 = 5
    }

    /// Runs on the reaper thread: wait for the exit without reaping, kill what is left of the group while the
    /// zombie still holds the pid (so the group id cannot be recycled), then reap and publish the status.
    private func reap() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        let (waiters, exit) = state.withLock { state -> ([CheckedContinuation<ProcessExit, Never>], ProcessExit) in
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            var r: pid_t
            repeat { r = waitpid(pid, &status, 0) } while r < 0 && errno == EINTR
            let e = r == pid ? ProcessExit(waitStatus: status) : ProcessExit(reason: .exited(code: 255))
            guard case .running(let waiters) = state else { return ([], e) }
            state = .exited(e)
            return (waiters, e)
        }
        for waiter in waiters { waiter.resume(returning: exit) }
    }

    /// Waits for the process to exit (not cancellable: the process is always reaped).
    func waitForExit() async -> ProcessExit {
        await withCheckedContinuation { (continuation: CheckedContinuation<ProcessExit, Never>) in
            let done: ProcessExit? = state.withLock { state in
                switch state {
                case .exited(let e): return e
                case .running(var waiters):
                    waiters.append(continuation)
                    state = .running(waiters: waiters)
                    return nil
                }
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Sends `signal` to the process group unless the leader has already been reaped.
    @discardableResult
    func signalGroup(_ signal: Int32) -> Bool {
        state.withLock { state in
            guard case .running = state else { return false }
            return kill(-pid, signal) == 0
        }
    }
}

/// glibc's posix_spawn extensions, which Swift's Glibc module does not import: looked up once with dlsym.
private enum SpawnExtensions {
    typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// `posix_spawn_file_actions_addchdir_np` (glibc 2.29).
    static let chdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
        unsafeBitCast($0, to: AddChdir.self)
    }
    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34): no descriptor leaks into workers.
    static let closeFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }
}

/// Resolves a bare command name through `PATH` (of the worker's environment); paths are returned unchanged.
func resolveExecutable(_ command: String, path: String?) -> String? {
    if command.contains("/") { return access(command, X_OK) == 0 ? command : nil }
    for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") where !directory.isEmpty {
        let candidate = "\(directory)/\(command)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
