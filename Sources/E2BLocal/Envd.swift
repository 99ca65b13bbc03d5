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
/// process service (in Process.swift). Requests reach it by the `E2b-Sandbox-Id` header or a
/// `49983-<id>.<domain>` host.
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

    func envd(_ request: inout Request, target: (id: String, port: Int?), segments: [String], context: E2BRequestContext) async -> Response {
        guard let sandbox = state.registry.get(target.id) else { return Reply.sandboxNotFound(target.id) }
        if let port = target.port, port != E2BLocalConfiguration.envdPort {
            return Reply.json(502, .object(["code": .int(502), "message": .string("The sandbox is running but port is not open"),
                                            "sandboxId": .string(sandbox.id), "port": .int(port)]))
        }
        let isRPC = segments.first.map { $0.hasPrefix("process.") || $0.hasPrefix("filesystem.") } ?? false
        if request.method == .get && segments == ["health"] { return Reply.empty(204) }
        if sandbox.secure && request.headers[.accessToken] != sandbox.accessToken {
            let message = request.headers[.accessToken] == nil
                ? "Missing X-Access-Token: this sandbox was created secure; send the envdAccessToken from its create answer."
                : "Invalid X-Access-Token for sandbox \(sandbox.id)."
            return isRPC ? Reply.connectError(.unauthenticated, message) : Reply.error(401, message)
        }
        switch (request.method, segments) {
        case (.post, ["files"]):
            return await upload(&request, sandbox: sandbox)
        case (.get, ["files"]):
            return await download(request, sandbox: sandbox)
        case (.post, ["process.Process", "Start"]):
            return await start(&request, sandbox: sandbox, context: context)
        case (.post, ["process.Process", "SendSignal"]):
            return await sendSignal(&request, sandbox: sandbox)
        case (.post, ["process.Process", "List"]):
            return listProcesses(sandbox)
        case (.post, let s) where isRPC:
            return Reply.connectError(.unimplemented, "\(s.joined(separator: "/")) is not implemented by e2b-local.")
        default:
            return Reply.error(404, "No such envd route: \(request.method) \(request.uri.path).")
        }
    }

    /// The user a request acts as: `username` in the query or HTTP Basic `user:`; only the sandbox's
    /// `user` and `root` exist (both run as the jail's unprivileged uid).
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

    private func paths(_ sandbox: LocalSandbox) -> WorkspacePaths { WorkspacePaths(workspace: sandbox.workspace, uid: sandbox.uid) }

    // MARK: upload

    private func upload(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        if let f = state.faults.take(.upload5xx, path: request.uri.path) {
            return Reply.error(f.status, "The upload failed (injected fault \(f.status)).")
        }
        let user = Self.user(request)
        guard Self.knownUser(user) else { return Reply.error(401, "User '\(user ?? "")' does not exist in this sandbox (only user and root).") }
        let contentType = request.headers[.contentType] ?? ""
        let pathParam = Query.value("path", in: request.uri.query)
        if let encoding = request.headers[.contentEncoding], encoding != "identity" {
            return Reply.error(400, "Content-Encoding \(encoding) is not supported by e2b-local: upload uncompressed.")
        }
        let ws = paths(sandbox)
        do {
            if contentType.lowercased().hasPrefix("multipart/form-data") {
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
                    written.append(try await writeFile(ws, dest) { fd, sandboxPath in
                        try part.data.withUnsafeBytes { try WorkspacePaths.writeAll(fd, $0, sandbox: sandboxPath) }
                    })
                }
                return Reply.json(200, .array(written))
            }
            guard let dest = pathParam, !dest.isEmpty else {
                return Reply.error(400, "An application/octet-stream upload needs the destination in the path query parameter.")
            }
            let body = request.body
            let entry = try await writeFile(ws, dest) { fd, sandboxPath in
                for try await chunk in body {
                    try await NIOThreadPool.singleton.runIfActive {
                        try chunk.withUnsafeReadableBytes { try WorkspacePaths.writeAll(fd, $0, sandbox: sandboxPath) }
                    }
                }
            }
            return Reply.json(200, .array([entry]))
        } catch let f as WorkspacePaths.Failure {
            return Reply.error(f.status, f.message)
        } catch let m as Multipart.Malformed {
            return Reply.error(400, m.message)
        } catch {
            return Reply.error(500, "The upload failed: \(error).")
        }
    }

    /// Creates the parents, opens the file, lets `fill` write it, and answers envd's entry for it.
    private func writeFile(_ ws: WorkspacePaths, _ dest: String,
                           fill: (Int32, String) async throws -> Void) async throws -> JSONValue {
        let (fd, sandboxPath, name) = try await NIOThreadPool.singleton.runIfActive {
            let (host, sandboxPath, name) = try ws.prepareFile(dest)
            return (try ws.openForWriting(host, sandbox: sandboxPath), sandboxPath, name)
        }
        do {
            try await fill(fd, sandboxPath)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        return .object(["path": .string(sandboxPath), "name": .string(name), "type": .string("file")])
    }

    // MARK: download

    private func download(_ request: Request, sandbox: LocalSandbox) async -> Response {
        let user = Self.user(request)
        guard Self.knownUser(user) else { return Reply.error(401, "User '\(user ?? "")' does not exist in this sandbox (only user and root).") }
        guard let raw = Query.value("path", in: request.uri.query) else {
            return Reply.error(400, "Name the file to read in the path query parameter.")
        }
        let ws = paths(sandbox)
        do {
            let (bytes, name) = try await NIOThreadPool.singleton.runIfActive { () throws -> ([UInt8], String) in
                let (host, sandboxPath) = try ws.existing(raw)
                let fd = open(host, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw WorkspacePaths.Failure(status: 500, message: "Could not open \(sandboxPath) (errno \(errno)).") }
                defer { close(fd) }
                var st = stat()
                guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                    throw WorkspacePaths.Failure(status: 400, message: "The path \(sandboxPath) is not a regular file.")
                }
                var out: [UInt8] = []
                out.reserveCapacity(Int(st.st_size))
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    guard n >= 0 else { throw WorkspacePaths.Failure(status: 500, message: "Could not read \(sandboxPath) (errno \(errno)).") }
                    if n == 0 { break }
                    out.append(contentsOf: buffer[0..<n])
                }
                return (out, String(sandboxPath.split(separator: "/").last ?? ""))
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            headers[.contentDisposition] = "attachment; filename=\"\(name.replacingOccurrences(of: "\"", with: "%22"))\""
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        } catch let f as WorkspacePaths.Failure {
            return Reply.error(f.status, f.message)
        } catch {
            return Reply.error(500, "The download failed: \(error).")
        }
    }
}
