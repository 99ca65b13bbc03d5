import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SandboxRunner

/// What every request handler shares: settings, the sandboxes, the jail, faults and counters.
final class E2BLocalState: Sendable {
    let config: E2BLocalConfiguration
    let registry: SandboxRegistry
    let faults: FaultInjector
    let stats = RequestStats()
    let logger: Logger
    /// Watchers of sandbox directories (filesystem.Filesystem/CreateWatcher).
    let watchers = WatcherTable()

    init(config: E2BLocalConfiguration, logger: Logger) {
        self.config = config
        self.registry = SandboxRegistry(config: config, logger: logger)
        self.faults = FaultInjector(config.faults)
        self.logger = logger
    }
}

/// One port, both planes: `/_local/*` is local control, a request naming a sandbox (the
/// `E2b-Sandbox-Id` header or a `49983-<id>.` host) goes to that sandbox's envd, the rest is
/// the control plane.
struct E2BLocalResponder: HTTPResponder {
    typealias Context = E2BRequestContext
    let state: E2BLocalState
    var config: E2BLocalConfiguration { state.config }

    func respond(to request: Request, context: E2BRequestContext) async throws -> Response {
        var request = request
        let path = request.uri.path
        let segments = path.split(separator: "/").map { Query.decode(String($0)) }
        if segments.first == "_local" {
            return await local(&request, segments: Array(segments.dropFirst()), context: context)
        }
        let target = Self.envdTarget(request)
        state.stats.count(route: Self.route(request.method, segments: segments, envd: target != nil))
        let delay = state.faults.latency(path: path)
        if delay > 0 { try? await Task.sleep(for: .milliseconds(delay)) }
        let response: Response
        if let target {
            response = await envd(&request, target: target, segments: segments, context: context)
        } else {
            response = await controlPlane(&request, segments: segments, context: context)
        }
        state.stats.count(status: response.status.code)
        return response
    }

    /// The route a request counts under in the stats: sandbox ids become `{id}`.
    static func route(_ method: HTTPRequest.Method, segments: [String], envd: Bool) -> String {
        var s = segments
        if !envd {
            if s.count >= 2 && s[0] == "sandboxes" { s[1] = "{id}" }
            if s.count >= 3 && s[0] == "v2" && s[1] == "sandboxes" { s[2] = "{id}" }
        }
        return "\(method) /" + s.joined(separator: "/")
    }

    /// Local control, loopback clients only, no key, never counted or faulted.
    private func local(_ request: inout Request, segments: [String], context: E2BRequestContext) async -> Response {
        guard context.peerIsLoopback(frontOnLoopback: E2BRequestContext.isLoopback(config.host)) else { return Reply.error(403, "/_local is for loopback clients only.") }
        switch (request.method, segments) {
        case (.get, ["faults"]):
            return Reply.json(200, state.faults.json)
        case (.post, ["faults"]):
            guard let body = try? await request.collectBody(upTo: 1 << 20),
                  let json = JSONValue.parse(Data(body.readableBytesView)) else {
                return Reply.error(400, "Send a JSON list of fault SPEC strings or objects, e.g. [\"create-429:count=2\"].")
            }
            do {
                let specs = try (json.arrayValue ?? [json]).map(FaultSpec.from(json:))
                state.faults.arm(specs)
                return Reply.json(200, state.faults.json)
            } catch let e as RunnerError {
                return Reply.error(400, e.message)
            } catch {
                return Reply.error(400, "\(error)")
            }
        case (.delete, ["faults"]):
            state.faults.disarmAll()
            return Reply.json(200, state.faults.json)
        case (.get, ["stats"]):
            return Reply.json(200, statsJSON)
        case (.get, let s) where s.count == 2 && s[0] == "sandboxes":
            // How the host sees a sandbox: for tests that check nothing of it outlives its kill.
            guard let sb = state.registry.get(s[1]) else { return Reply.error(404, "No sandbox \(s[1]).") }
            var o: [String: JSONValue] = ["initPid": .int(Int(sb.instance.initPid)), "bwrapPid": .int(Int(sb.instance.bwrapPid))]
            if let ns = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(sb.instance.initPid)/ns/pid") {
                o["pidNamespace"] = .string(ns)
            }
            if let uid = sb.instance.uid { o["hostUID"] = .int(Int(uid)) }
            return Reply.json(200, .object(o))
        case (.get, ["egress"]):
            // Every egress log held, with each sandbox's id and metadata.
            let logs: [JSONValue] = state.registry.egressLogs.map { item in
                let entries = (try? JSONEncoder().encode(item.log)).flatMap { JSONValue.parse($0) } ?? .array([])
                return .object(["sandboxID": .string(item.id), "metadata": .object(item.metadata.mapValues(JSONValue.string)), "egress": entries])
            }
            return Reply.json(200, .array(logs))
        case (.get, let s) where s.count == 3 && s[0] == "sandboxes" && s[2] == "egress":
            // Every destination the sandbox asked its egress proxy for (live, or recently ended).
            guard let log = state.registry.egressLog(s[1]) else { return Reply.error(404, "No egress log for sandbox \(s[1]).") }
            let json = (try? JSONEncoder().encode(log)).flatMap { JSONValue.parse($0) } ?? .array([])
            return Reply.json(200, json)
        case (.delete, ["stats"]):
            state.stats.reset()
            return Reply.json(200, statsJSON)
        default:
            return Reply.error(404, "No such local route: \(request.method) \(request.uri.path).")
        }
    }

    var statsJSON: JSONValue {
        var o = state.stats.json
        let c = state.registry.stats
        o["live_sandboxes"] = .int(state.registry.liveCount)
        o["sandboxes_died"] = .int(c.died)
        o["running_processes"] = .int(state.registry.all.reduce(0) { $0 + $1.runningProcesses.count })
        o["sandboxes_created"] = .int(c.created)
        o["sandboxes_killed"] = .int(c.killed)
        o["sandboxes_expired"] = .int(c.expired)
        return .object(o)
    }
}
