import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SandboxRunner

/// envd's Connect filesystem service (infra `packages/envd/internal/services/filesystem/`):
/// `Stat`, `ListDir`, `MakeDir`, `Remove`, `Move`, and watching (`CreateWatcher`,
/// `GetWatcherEvents`, `RemoveWatcher`, streaming `WatchDir`). Every operation runs inside the
/// sandbox through its agent, as its user, with envd's path rules (`~` and relative paths are
/// under /home/user).
extension E2BLocalResponder {
    func filesystemService(_ method: String, _ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        let link = sandbox.instance.link
        switch method {
        case "Stat":
            return await unary(&request) { m in
                let r = try await link.call("stat", ["path": .string(try Self.path(m, "path"))])
                return .object(["entry": Self.entryInfo(r.json["entry"])])
            }
        case "ListDir":
            return await unary(&request) { m in
                let depth = m["depth"]?.intValue ?? 0
                let r = try await link.call("list", ["path": .string(try Self.path(m, "path")), "depth": .int(max(1, depth))])
                return .object(["entries": .array((r.json["entries"]?.arrayValue ?? []).map { Self.entryInfo($0) })])
            }
        case "MakeDir":
            return await unary(&request) { m in
                let r = try await link.call("mkdir", ["path": .string(try Self.path(m, "path"))])
                return .object(["entry": Self.entryInfo(r.json["entry"])])
            }
        case "Remove":
            return await unary(&request) { m in
                _ = try await link.call("remove", ["path": .string(try Self.path(m, "path"))])
                return .object([:])
            }
        case "Move":
            return await unary(&request) { m in
                let r = try await link.call("move", ["source": .string(try Self.path(m, "source")),
                                                     "destination": .string(try Self.path(m, "destination"))])
                return .object(["entry": Self.entryInfo(r.json["entry"])])
            }
        case "CreateWatcher":
            return await unary(&request) { m in
                let watcher = try await DirectoryWatcher.start(sandbox: sandbox, path: try Self.path(m, "path"),
                                                               recursive: m["recursive"]?.boolValue ?? false)
                return .object(["watcherId": .string(state.watchers.add(watcher))])
            }
        case "GetWatcherEvents":
            return await unary(&request) { m in
                guard let id = m["watcherId"]?.stringValue, let w = state.watchers.get(id), w.sandbox === sandbox else {
                    throw ConnectFailure(.notFound, "watcher with id \(m["watcherId"]?.display ?? "") not found")
                }
                return .object(["events": .array(try await w.poll().map(\.json))])
            }
        case "RemoveWatcher":
            return await unary(&request) { m in
                guard let id = m["watcherId"]?.stringValue, state.watchers.remove(id, of: sandbox) else {
                    throw ConnectFailure(.notFound, "watcher with id \(m["watcherId"]?.display ?? "") not found")
                }
                return .object([:])
            }
        case "WatchDir":
            return await watchDir(&request, sandbox: sandbox, context: context)
        default:
            return Reply.connectError(.unimplemented, "filesystem.Filesystem/\(method) is not implemented by e2b-local.")
        }
    }

    static func path(_ m: JSONValue, _ field: String) throws -> String {
        guard let p = m[field]?.stringValue else { throw ConnectFailure(.invalidArgument, "\(field) is required") }
        return p
    }

    /// The agent's entry as proto3 JSON of envd's EntryInfo (int64 as a string, enum names,
    /// RFC 3339 times).
    static func entryInfo(_ e: JSONValue?) -> JSONValue {
        guard let o = e?.objectValue else { return .object([:]) }
        var out: [String: JSONValue] = ["name": o["name"] ?? .string(""), "path": o["path"] ?? .string(""),
                                        "size": .string(String(o["size"]?.intValue ?? 0)), "mode": .int(o["mode"]?.intValue ?? 0),
                                        "permissions": o["permissions"] ?? .string(""), "owner": o["owner"] ?? .string(""),
                                        "group": o["group"] ?? .string(""), "metadata": .object([:])]
        switch o["type"]?.stringValue {
        case "file"?: out["type"] = .string("FILE_TYPE_FILE")
        case "dir"?: out["type"] = .string("FILE_TYPE_DIRECTORY")
        case "symlink"?: out["type"] = .string("FILE_TYPE_SYMLINK")
        default: out["type"] = .string("FILE_TYPE_UNSPECIFIED")
        }
        if let ns = o["modifiedTime"]?.intValue {
            out["modifiedTime"] = .string(Date(timeIntervalSince1970: Double(ns) / 1e9).rfc3339)
        }
        if let t = o["symlinkTarget"]?.stringValue { out["symlinkTarget"] = .string(t) }
        return .object(out)
    }

    private func watchDir(_ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        let message: JSONValue
        do {
            let body = try await request.collectBody(upTo: 1 << 20)
            message = try Envelope.firstMessage(body)
        } catch let f as ConnectFailure {
            return Self.streamError(f)
        } catch {
            return Self.streamError(ConnectFailure(.resourceExhausted, "The request body is over 1 MiB."))
        }
        let watcher: DirectoryWatcher
        do {
            watcher = try await DirectoryWatcher.start(sandbox: sandbox, path: try Self.path(message, "path"),
                                                       recursive: message["recursive"]?.boolValue ?? false)
        } catch let f as ConnectFailure {
            return Self.streamError(f)
        } catch let f as AgentLink.Failure {
            return Self.streamError(ConnectFailure(f))
        } catch {
            return Self.streamError(ConnectFailure(.internalError, "\(error)"))
        }
        let keepalive = request.headers[.keepaliveInterval].flatMap(Int.init).map { Duration.seconds(max(1, $0)) } ?? .seconds(50)
        let deadline: Duration?
        switch Self.deadline(request) {
        case .failure(let f): return Self.streamError(f)
        case .success(let d): deadline = d
        }
        let channel = context.channel
        var headers = HTTPFields()
        headers[.contentType] = "application/connect+json"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await writer.write(Envelope.frame(#"{"start":{}}"#))
            let started = ContinuousClock.now
            var lastSent = started
            while channel.isActive {
                if let deadline, ContinuousClock.now - started >= deadline {
                    try await writer.write(Envelope.endStream(error: (.deadlineExceeded, "context deadline exceeded")))
                    break
                }
                let events: [WatchEvent]
                do { events = try await watcher.poll() } catch {
                    try await writer.write(Envelope.endStream(error: (.unavailable, "The sandbox \(sandbox.id) is gone.")))
                    break
                }
                for e in events { try await writer.write(Envelope.frame(JSONValue.object(["filesystem": e.json]).jsonText())) }
                if !events.isEmpty { lastSent = .now }
                if ContinuousClock.now - lastSent >= keepalive {
                    try await writer.write(Envelope.frame(#"{"keepalive":{}}"#))
                    lastSent = .now
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            try await writer.finish(nil)
        })
    }
}

/// A filesystem event as envd's FilesystemEvent.
struct WatchEvent: Sendable {
    var name: String
    var type: String
    var json: JSONValue { .object(["name": .string(name), "type": .string(type)]) }
}

/// Watches a directory by comparing listings the agent takes inside the sandbox: creations,
/// writes (size or time changed), mode changes and removals since the last look. Events between
/// two looks that cancel out (a file made and removed) are not seen: envd's inotify would see them.
final class DirectoryWatcher: @unchecked Sendable {
    struct Entry: Equatable { var size: Int; var mtime: Int; var mode: Int; var type: String }

    let sandbox: LocalSandbox
    let path: String
    let recursive: Bool
    private let lock = NSLock()
    private var last: [String: Entry] = [:]

    private init(sandbox: LocalSandbox, path: String, recursive: Bool) {
        self.sandbox = sandbox
        self.path = path
        self.recursive = recursive
    }

    static func start(sandbox: LocalSandbox, path: String, recursive: Bool) async throws -> DirectoryWatcher {
        let w = DirectoryWatcher(sandbox: sandbox, path: path, recursive: recursive)
        w.last = try await w.snapshot()
        return w
    }

    private func snapshot() async throws -> [String: Entry] {
        let r = try await sandbox.instance.link.call("list", ["path": .string(path), "depth": .int(recursive ? 32 : 1)])
        var out: [String: Entry] = [:]
        for e in r.json["entries"]?.arrayValue ?? [] {
            guard let rel = e["rel"]?.stringValue else { continue }
            out[rel] = Entry(size: e["size"]?.intValue ?? 0, mtime: e["modifiedTime"]?.intValue ?? 0, mode: e["mode"]?.intValue ?? 0,
                             type: e["type"]?.stringValue ?? "")
        }
        return out
    }

    /// The events since the last look.
    func poll() async throws -> [WatchEvent] {
        let now = try await snapshot()
        return lock.withLock {
            var events: [WatchEvent] = []
            for (name, e) in now.sorted(by: { $0.key < $1.key }) {
                guard let before = last[name] else { events.append(WatchEvent(name: name, type: "EVENT_TYPE_CREATE")); continue }
                if before.size != e.size || before.mtime != e.mtime { events.append(WatchEvent(name: name, type: "EVENT_TYPE_WRITE")) }
                if before.mode != e.mode { events.append(WatchEvent(name: name, type: "EVENT_TYPE_CHMOD")) }
            }
            for name in last.keys.sorted() where now[name] == nil { events.append(WatchEvent(name: name, type: "EVENT_TYPE_REMOVE")) }
            last = now
            return events
        }
    }
}

/// The watchers of every sandbox, by id.
final class WatcherTable: @unchecked Sendable {
    private let lock = NSLock()
    private var watchers: [String: DirectoryWatcher] = [:]

    func add(_ w: DirectoryWatcher) -> String {
        let id = UUID().uuidString.lowercased()
        lock.withLock {
            watchers = watchers.filter { !$0.value.sandbox.isTerminated }
            watchers[id] = w
        }
        return id
    }

    func get(_ id: String) -> DirectoryWatcher? { lock.withLock { watchers[id] } }

    func remove(_ id: String, of sandbox: LocalSandbox) -> Bool {
        lock.withLock {
            guard let w = watchers[id], w.sandbox === sandbox else { return false }
            watchers[id] = nil
            return true
        }
    }
}
