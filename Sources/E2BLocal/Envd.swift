import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// envd, the agent inside each sandbox: health, file upload and download, and the Connect
/// process and filesystem services (Process.swift, Filesystem.swift). Requests reach it by the
/// `E2b-Sandbox-Id` header or a `49983-<id>.<domain>` host. Every file operation is carried out
/// inside the sandbox by its agent, as its user; the server only reads and writes the regular
/// files the agent opened there.
extension E2BLocalResponder {
    /// Which sandbox (and port) an envd request is for, when it is one.
    static func envdTarget(_ request: Request) -> (id: String, port: Int?)? {
        if let id = request.headers[.sandboxID], !id.isEmpty {
            return (id, request.headers[.sandboxPort].flatMap { Int($0) })
        }
        // 49983-<id>.<domain>[:port]
        guard let authority = request.head.authority,
              let label = authority.split(separator: ".").first, authority.contains(".") else { return nil }
        let parts = label.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let port = Int(parts[0]), !parts[1].isEmpty,
              parts[1].allSatisfy({ $0.isLetter || $0.isNumber }) else { return nil }
        return (String(parts[1]), port)
    }

    /// envd's own refusal of a missing or wrong access token: plain JSON, for RPCs too (infra
    /// `packages/envd/internal/api/auth.go`: WithAuthorization wraps every route but the health
    /// check and answers jsonError(401, …) — not a Connect error).
    static let unauthorizedMessage = "unauthorized access, please provide a valid access token or method signing if supported"

    func envd(_ request: inout Request, target: (id: String, port: Int?), segments: [String], context: E2BRequestContext) async -> Response {
        guard let sandbox = state.registry.get(target.id) else { return Reply.sandboxNotFound(target.id) }
        if let port = target.port, port != E2BLocalConfiguration.envdPort {
            return Reply.json(502, .object(["code": .int(502), "message": .string("The sandbox is running but port is not open"),
                                            "sandboxId": .string(sandbox.id), "port": .int(port)]))
        }
        if request.headers[.apiKey] != nil { state.stats.countEnvdCallWithAPIKey() }
        if config.strict && request.headers[.apiKey] != nil {
            // E2B's proxy forwards every header into the sandbox, where the script can read it.
            return Reply.error(403, "This envd request carries X-API-Key: the team API key must never be sent into a sandbox, "
                + "where any script can read it (e2b-local --strict).")
        }
        let isRPC = segments.first.map { $0.hasPrefix("process.") || $0.hasPrefix("filesystem.") } ?? false
        if request.method == .get && segments == ["health"] { return Reply.empty(204) }
        if sandbox.secure && request.headers[.accessToken] != sandbox.accessToken {
            return Reply.error(401, Self.unauthorizedMessage)
        }
        if isRPC, let user = Self.user(request), !Self.knownUser(user) {
            return Reply.connectError(.unauthenticated, "invalid username: '\(user)'")
        }
        switch (request.method, segments) {
        case (.post, ["files"]):
            return await upload(&request, sandbox: sandbox)
        case (.get, ["files"]):
            return await download(request, sandbox: sandbox)
        case (.post, let s) where s.count == 2 && s[0] == "process.Process":
            return await processService(s[1], &request, sandbox: sandbox, context: context)
        case (.post, let s) where s.count == 2 && s[0] == "filesystem.Filesystem":
            return await filesystemService(s[1], &request, sandbox: sandbox, context: context)
        case (.post, let s) where isRPC:
            return Reply.connectError(.unimplemented, "\(s.joined(separator: "/")) is not implemented by e2b-local.")
        default:
            return Reply.error(404, "No such envd route: \(request.method) \(request.uri.path).")
        }
    }

    /// The user a request acts as: `username` in the query or HTTP Basic `user:`; only the sandbox's
    /// `user` and `root` exist (both are the sandbox's one unprivileged user).
    static func user(_ request: Request) -> String? {
        if let u = Query.value("username", in: request.uri.query), !u.isEmpty { return u }
        if let auth = request.headers[.authorization], auth.hasPrefix("Basic "),
           let data = Data(base64Encoded: String(auth.dropFirst(6))), let text = String(data: data, encoding: .utf8) {
            let name = String(text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            return name.isEmpty ? nil : name
        }
        return nil
    }

    static func knownUser(_ user: String?) -> Bool { user == nil || user == "user" || user == "root" }

    /// The HTTP status envd gives a file operation that failed this way.
    static func fileStatus(_ f: AgentLink.Failure) -> Int {
        switch f.code {
        case "not_found": return 404
        case "invalid_argument": return 400
        case "resource_exhausted": return 507
        case "unavailable": return 502
        default: return 500
        }
    }

    // MARK: upload

    private func upload(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        if let f = state.faults.take(.upload5xx, path: request.uri.path) {
            return Reply.error(f.status, "The upload failed (injected fault \(f.status)).")
        }
        let user = Self.user(request)
        guard Self.knownUser(user) else { return Reply.error(401, "error looking up user '\(user ?? "")': unknown user") }
        let contentType = request.headers[.contentType] ?? ""
        let pathParam = Query.value("path", in: request.uri.query)
        if let encoding = request.headers[.contentEncoding], encoding != "identity" {
            return Reply.error(400, "Content-Encoding \(encoding) is not supported by e2b-local: upload uncompressed.")
        }
        do {
            if contentType.lowercased().hasPrefix("multipart/") {
                guard let boundary = Multipart.boundary(contentType) else {
                    return Reply.error(400, "The multipart upload has no boundary in its Content-Type.")
                }
                let body: ByteBuffer
                do { body = try await request.collectBody(upTo: config.maxMultipartBytes) } catch {
                    return Reply.error(413, "The multipart upload is over \(config.maxMultipartBytes >> 20) MiB; upload as application/octet-stream.")
                }
                let parts = try Multipart.parse(Array(body.readableBytesView), boundary: boundary).filter { $0.name == "file" }
                guard !parts.isEmpty else { return Reply.error(400, "The multipart upload has no part named \"file\".") }
                var written: [JSONValue] = []
                for part in parts {
                    let dest = parts.count == 1 ? (pathParam ?? part.filename) : (part.filename ?? pathParam)
                    guard let dest, !dest.isEmpty else {
                        return Reply.error(400, "Name the destination: a path query parameter or the part's filename.")
                    }
                    written.append(try await writeFile(sandbox, dest) { fd in
                        try await Blocking.result { try part.data.withUnsafeBytes { try Self.writeAll(fd, $0) } }.get()
                    })
                }
                return Reply.json(200, .array(written))
            }
            guard contentType.lowercased().hasPrefix("application/octet-stream") else {
                return Reply.error(400, "unsupported content type: \(contentType), expected multipart/form-data or application/octet-stream")
            }
            guard let dest = pathParam, !dest.isEmpty else {
                return Reply.error(400, "path query parameter is required for raw body upload")
            }
            let body = request.body
            let entry = try await writeFile(sandbox, dest) { fd in
                for try await chunk in body {
                    try await NIOThreadPool.singleton.runIfActive {
                        try chunk.withUnsafeReadableBytes { try Self.writeAll(fd, $0) }
                    }
                }
            }
            return Reply.json(200, .array([entry]))
        } catch let f as AgentLink.Failure {
            return Reply.error(Self.fileStatus(f), f.message)
        } catch let w as WriteFailure {
            return Reply.error(w.status, w.message)
        } catch let m as Multipart.Malformed {
            return Reply.error(400, m.message)
        } catch {
            return Reply.error(500, "The upload failed: \(error).")
        }
    }

    struct WriteFailure: Error {
        var status: Int
        var message: String
    }

    /// Has the agent create (or truncate) the file inside the sandbox, checks it handed back a
    /// regular file, lets `fill` write it, and answers envd's entry for it.
    private func writeFile(_ sandbox: LocalSandbox, _ dest: String, fill: (Int32) async throws -> Void) async throws -> JSONValue {
        let reply = try await sandbox.instance.link.call("write", ["path": .string(dest)])
        guard let fd = reply.fds.first, Self.isRegularFile(fd) else {
            reply.fds.forEach { close($0) }
            throw WriteFailure(status: 500, message: "The sandbox did not hand over a regular file for \(dest).")
        }
        reply.fds.dropFirst().forEach { close($0) }
        do {
            try await fill(fd)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        return .object(["path": reply.json["path"] ?? .string(dest), "name": reply.json["name"] ?? .string(""), "type": .string("file")])
    }

    static func isRegularFile(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                if e == ENOSPC || e == EDQUOT || e == EFBIG {
                    throw WriteFailure(status: 507, message: "not enough disk space available in the sandbox")
                }
                throw WriteFailure(status: 500, message: "error writing file: \(String(cString: strerror(e)))")
            }
            offset += n
        }
    }

    // MARK: download

    private func download(_ request: Request, sandbox: LocalSandbox) async -> Response {
        let user = Self.user(request)
        guard Self.knownUser(user) else { return Reply.error(401, "error looking up user '\(user ?? "")': unknown user") }
        guard let raw = Query.value("path", in: request.uri.query) else {
            return Reply.error(400, "Name the file to read in the path query parameter.")
        }
        let reply: AgentLink.Reply
        do { reply = try await sandbox.instance.link.call("read", ["path": .string(raw)]) } catch let f as AgentLink.Failure {
            return Reply.error(Self.fileStatus(f), f.message)
        } catch {
            return Reply.error(500, "The download failed: \(error).")
        }
        guard let fd = reply.fds.first, Self.isRegularFile(fd) else {
            reply.fds.forEach { close($0) }
            return Reply.error(500, "The sandbox did not hand over a regular file for \(raw).")
        }
        reply.fds.dropFirst().forEach { close($0) }
        let name = reply.json["name"]?.stringValue ?? ""
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        headers[.contentDisposition] = "attachment; filename=\"\(name.replacingOccurrences(of: "\"", with: "%22"))\""
        let file = OwnedFD(fd)
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { file.close() }
            while true {
                let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> [UInt8] in
                    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(file.fd, $0.baseAddress, $0.count) }
                        if n < 0 && errno == EINTR { continue }
                        guard n >= 0 else { throw WriteFailure(status: 500, message: "error reading file") }
                        return Array(buffer[0..<n])
                    }
                }
                if chunk.isEmpty { break }
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        })
    }
}

