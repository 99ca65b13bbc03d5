import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The artifact stream `run.py` writes after the script ends (on the pipe the local jail passes
/// in as descriptor 3, or into a file envd hands back on E2B). Big-endian throughout:
///
///     stream = "SRA1" record* end
///     record = 'F' u16 nameLen name u64 size data[size]   a regular file under out/
///            | 'L' u16 nameLen name                       a symbolic link (refused)
///            | 'S' u16 nameLen name                       a FIFO, socket or device (refused)
///            | 'X' u16 msgLen message                     run.py could not collect out/ (its reason)
///     end    = 'E' u32 count                              count = the number of 'F' records
///
/// Names are paths relative to `out/` (an empty name means `out/` itself). Nothing may follow
/// the end. Everything in it is untrusted: the script runs in the same process as `run.py` and
/// can write anything to the descriptor.
public enum ArtifactStream {
    public static let magic: [UInt8] = Array("SRA1".utf8)
    /// Where `run.py` finds its target: `fd:N` or `file:PATH`.
    public static let environmentVariable = "SANDBOX_RUNNER_ARTIFACTS"
    /// The stderr line `run.py` ends with on E2B when it wrote a stream file with files in it.
    public static let marker = "sandbox-runner-artifacts: "
}

/// What a run's artifact collection came to.
public struct ArtifactCollection: Sendable {
    /// The files, in the order they arrived; empty unless the stream was complete and every file placed.
    public var artifacts: [Artifact] = []
    /// Why nothing was collected (a refused name, a limit, a malformed or cut stream).
    public var error: RunnerError?
    /// Whether any byte of a stream arrived (a run whose `run.py` never got to streaming sent none).
    public var started = false

    public init(artifacts: [Artifact] = [], error: RunnerError? = nil, started: Bool = false) {
        self.artifacts = artifacts
        self.error = error
        self.started = started
    }
}

/// Reads an artifact stream as untrusted data and writes its files into a directory the host
/// created: every name checked (relative, no `..`, no control characters, bounded length and
/// depth, no duplicates), counts and total size bounded before any byte is read, sha256 computed
/// here, each file written to a temporary name (`O_EXCL`, `O_NOFOLLOW`) and fsync'd, and all of
/// them renamed into place (never replacing anything) only once the stream has ended correctly.
/// On any failure every temporary and placed file is removed: nothing partial is presented.
public final class ArtifactReceiver: @unchecked Sendable {
    public let output: ArtifactOutput
    public var limits: ArtifactLimits { output.limits }
    /// The directory once a file made it exist.
    private var directory: ArtifactDirectory?

    private enum State { case magic, type, nameLength, name, size, data, endCount, message, done, failed }
    private var state = State.magic
    private var header: [UInt8] = []
    private var need = 4
    private var recordType: UInt8 = 0
    private var name: [UInt8] = []
    private var remaining: UInt64 = 0
    private var current: (fd: Int32, temp: String, name: String, size: Int)?
    private var hasher = SHA256()
    private var pending: [(temp: String, artifact: Artifact)] = []
    private var names = Set<String>()
    private var directories = Set<String>()
    private var total = 0
    private var failure: RunnerError?
    private var started = false

    public init(output: ArtifactOutput) {
        self.output = output
    }

    deinit {
        if let c = current { close(c.fd); directory?.unlink(c.temp) }
        for p in pending { directory?.unlink(p.temp) }
    }

    /// Takes the next bytes; false once the stream is refused (stop reading: the rest is ignored).
    @discardableResult
    public func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if state == .failed { return false }
        if !bytes.isEmpty { started = true }
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .failed: return false
            case .done:
                fail("The sandbox wrote more after the end of its artifact stream; nothing was collected.")
                return false
            case .data:
                let take = Int(min(UInt64(n - i), remaining))
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])
                guard let c = current, writeAll(c.fd, chunk) else {
                    fail("Could not write out/\(display(current?.name ?? "")) into \(directory?.path ?? "the output directory") (\(String(cString: strerror(errno)))); "
                        + "check the free space there.")
                    return false
                }
                hasher.update(chunk)
                remaining -= UInt64(take)
                i += take
                if remaining == 0 { finishFile() }
            case .name, .message:
                let take = min(n - i, need - name.count)
                name.append(contentsOf: bytes[i..<(i + take)])
                i += take
                if name.count == need { state == .name ? nameDone() : messageDone() }
            default:
                let take = min(n - i, need - header.count)
                header.append(contentsOf: bytes[i..<(i + take)])
                i += take
                if header.count == need { headerDone() }
            }
        }
        return state != .failed
    }

    /// After the last byte: the collection, with every file in place when the stream was complete.
    public func finish() -> ArtifactCollection {
        if state == .failed || failure != nil { return ArtifactCollection(error: failure, started: started) }
        guard started else { return ArtifactCollection(started: false) }
        guard state == .done else {
            fail("The sandbox's artifact stream ended before it was complete (the run was cut short, or the script closed or wrote "
                + "to descriptor 3 itself); no file of out/ was collected.")
            return ArtifactCollection(error: failure, started: true)
        }
        // Every file is complete and checked: move them all into place, or none.
        guard let directory, !pending.isEmpty else { return ArtifactCollection(started: true) }
        var placed: [String] = []
        var madeDirectories: [String] = []
        for p in pending {
            do {
                madeDirectories += try directory.place(p.temp, as: p.artifact.name)
                placed.append(p.artifact.name)
            } catch let e as RunnerError {
                for name in placed { directory.removePlaced(name) }
                for d in madeDirectories.reversed() { directory.removeCreatedDirectory(d) }
                for q in pending { directory.unlink(q.temp) }
                state = .failed
                failure = e
                pending = []
                return ArtifactCollection(error: e, started: true)
            } catch {
                state = .failed
                return ArtifactCollection(error: RunnerError(.internalError, "\(error)"), started: true)
            }
        }
        directory.sync()
        let artifacts = pending.map(\.artifact)
        pending = []
        return ArtifactCollection(artifacts: artifacts, started: true)
    }

    /// Reads `fd` to its end (or until the stream is refused), then finishes. For the local
    /// jail's pipe, on a thread of its own while the jail runs.
    public func consume(fd: Int32) -> ArtifactCollection {
        let size = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let r = read(fd, buffer.baseAddress, size)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            if !feed(UnsafeRawBufferPointer(rebasing: buffer[0..<r])) { break }
        }
        return finish()
    }

    // MARK: parsing

    private func expect(_ s: State, _ bytes: Int) {
        state = s
        need = bytes
        header.removeAll(keepingCapacity: true)
    }

    private func headerDone() {
        let h = header
        switch state {
        case .magic:
            guard h == ArtifactStream.magic else { return fail("The sandbox's artifact stream is malformed (it does not start as run.py's does); nothing was collected.") }
            expect(.type, 1)
        case .type:
            recordType = h[0]
            switch recordType {
            case UInt8(ascii: "F"), UInt8(ascii: "L"), UInt8(ascii: "S"), UInt8(ascii: "X"): expect(.nameLength, 2)
            case UInt8(ascii: "E"): expect(.endCount, 4)
            default: fail("The sandbox's artifact stream is malformed (an unknown record); nothing was collected.")
            }
        case .nameLength:
            let length = Int(h[0]) << 8 | Int(h[1])
            name.removeAll(keepingCapacity: true)
            need = length
            if recordType == UInt8(ascii: "X") {
                state = .message
                if length == 0 { messageDone() }
                return
            }
            guard length <= limits.maxNameBytes else {
                return fail("The script left a name under out/ of \(length) bytes, over the limit of \(limits.maxNameBytes); use shorter names.")
            }
            state = .name
            if length == 0 { nameDone() }
        case .size:
            let size = h.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let shown = display(String(decoding: name, as: UTF8.self))
            guard size <= UInt64(limits.maxTotalBytes - total) else {
                return fail("out/\(shown) (\(size) bytes) takes the run's files past the limit of \(limits.maxTotalBytes) bytes "
                    + "(--max-artifact-bytes); write less into out/ or raise the limit.")
            }
            let file: (fd: Int32, name: String)
            do {
                let dir = try directory ?? output.directory()
                directory = dir
                file = try dir.createTemporary()
            } catch let e as RunnerError { return fail(e) } catch { return fail("\(error)") }
            current = (file.fd, file.name, String(decoding: name, as: UTF8.self), Int(size))
            hasher = SHA256()
            total += Int(size)
            remaining = size
            state = .data
            if size == 0 { finishFile() }
        case .endCount:
            let count = h.reduce(0) { $0 << 8 | Int($1) }
            guard count == pending.count else {
                return fail("The sandbox's artifact stream is malformed (its end counts \(count) files, \(pending.count) arrived); nothing was collected.")
            }
            state = .done
        default:
            break
        }
    }

    private func nameDone() {
        guard let text = String(validating: name, as: UTF8.self) else {
            return fail("The script left a name under out/ that is not valid UTF-8 (\(display(String(decoding: name, as: UTF8.self)))); "
                + "use UTF-8 names.")
        }
        switch recordType {
        case UInt8(ascii: "L"):
            return fail(text.isEmpty ? "out/ itself is a symbolic link; the runner collects regular files only: make out/ a directory."
                : "out/\(display(text)) is a symbolic link; the runner collects regular files only: write the file itself into out/.")
        case UInt8(ascii: "S"):
            return fail("out/\(display(text)) is not a regular file (a FIFO, socket or device); the runner collects regular files only.")
        default:
            break
        }
        if let problem = Self.problem(with: text, limits: limits) { return fail(problem) }
        guard pending.count < limits.maxCount else {
            return fail("The script left more than \(limits.maxCount) files under out/ (--max-artifacts); write fewer or raise the limit.")
        }
        var prefixes: [String] = []
        var prefix = ""
        for part in text.split(separator: "/").dropLast() {
            prefix += (prefix.isEmpty ? "" : "/") + part
            prefixes.append(prefix)
        }
        guard !names.contains(text), !directories.contains(text), !prefixes.contains(where: names.contains) else {
            return fail("The sandbox sent out/\(display(text)) twice, or as both a file and a directory; nothing was collected.")
        }
        names.insert(text)
        directories.formUnion(prefixes)
        expect(.size, 8)
    }

    private func messageDone() {
        let text = String(decoding: name, as: UTF8.self)
        fail("Collecting out/ failed inside the sandbox: \(display(text))")
    }

    private func finishFile() {
        guard let c = current else { return }
        current = nil
        let synced = fsync(c.fd) == 0
        close(c.fd)
        guard synced else {
            directory?.unlink(c.temp)
            return fail("Could not write out/\(display(c.name)) durably into \(directory?.path ?? "the output directory") (fsync: \(String(cString: strerror(errno)))).")
        }
        let artifact = Artifact(name: c.name, bytes: c.size, sha256: hasher.finalizeHex(), mediaType: Artifact.mediaType(of: c.name))
        pending.append((c.temp, artifact))
        expect(.type, 1)
    }

    private func fail(_ message: String) { fail(RunnerError(.scriptFailed, message)) }

    private func fail(_ error: RunnerError) {
        guard state != .failed else { return }
        state = .failed
        failure = error
        if let c = current { close(c.fd); directory?.unlink(c.temp); current = nil }
        for p in pending { directory?.unlink(p.temp) }
        pending = []
    }

    private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let w = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if w < 0 && errno == EINTR { continue }
            if w <= 0 { return false }
            offset += w
        }
        return true
    }

    /// A name for a message: control characters escaped, at most 200 characters.
    func display(_ name: String) -> String {
        let s = TerminalText.escape(name)
        return s.count > 200 ? String(s.prefix(200)) + "…" : s
    }

    /// Why `name` cannot be an artifact's name, or nil when it can: a relative path of 1…depth
    /// components, none empty, `.` or `..`, none over the component limit, no control
    /// characters, no backslash, not starting with the runner's own `.sandbox-runner-`.
    public static func problem(with name: String, limits: ArtifactLimits = ArtifactLimits()) -> String? {
        let shown = TerminalText.escape(String(name.prefix(200)))
        if name.isEmpty { return "The sandbox sent an artifact without a name; nothing was collected." }
        if name.utf8.count > limits.maxNameBytes {
            return "The script left a name under out/ of \(name.utf8.count) bytes, over the limit of \(limits.maxNameBytes); use shorter names."
        }
        if name.hasPrefix("/") {
            return "The sandbox named an artifact '\(shown)', an absolute path; artifacts are files under out/, named relative to it. Nothing was collected."
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains("..") {
            return "The sandbox named an artifact '\(shown)', which climbs out of out/ with '..'; nothing was collected."
        }
        if parts.contains(where: { $0.isEmpty || $0 == "." }) {
            return "The sandbox named an artifact '\(shown)' with an empty or '.' component; nothing was collected."
        }
        if parts.count > limits.maxDepth {
            return "out/\(shown) is nested \(parts.count) levels deep, over the limit of \(limits.maxDepth); use fewer subdirectories."
        }
        if parts.contains(where: { $0.utf8.count > limits.maxComponentBytes }) {
            return "out/\(shown) has a component over \(limits.maxComponentBytes) bytes; use shorter names."
        }
        if name.unicodeScalars.contains(where: { TerminalText.isControl($0) || $0 == "\n" || $0 == "\t" || $0 == "\\" }) {
            return "out/\(shown) has a control character or a backslash in its name; use plain names."
        }
        if parts.contains(where: { $0.hasPrefix(".sandbox-runner-") }) {
            return "out/\(shown) uses the prefix .sandbox-runner-, which the runner keeps for its own files; rename it."
        }
        return nil
    }
}
