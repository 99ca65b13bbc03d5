import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One connection from a sandbox to its egress proxy: buffered blocking reads with a timeout
/// (the proxy's stop shuts the socket down, which wakes them) and complete writes.
final class EgressClientConnection {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    let timeoutMs: Int32
    /// Bytes that arrived from the sandbox, in all (for the log of a connection that never made a request).
    private(set) var received = 0

    init(fd: Int32, timeout: Duration) {
        self.fd = fd
        self.timeoutMs = Int32(clamping: timeout.milliseconds)
    }

    var buffered: Int { buffer.count - start }

    /// Drops what was consumed (only between scans: indexes into the buffer change).
    private func compact() {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
    }

    /// Reads more into the buffer: > 0 bytes read, 0 end of stream, -1 error or timeout.
    func fill() -> Int {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let r = poll(&p, 1, timeoutMs)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return -1 }
            break
        }
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 ? 0 : -1 }
            buffer.append(contentsOf: chunk[0..<n])
            received += n
            return n
        }
    }

    enum Head { case head([UInt8]), end, tooLarge, failed, bareLF }

    /// The next request head (up to and including the blank line).
    func readHead(limit: Int) -> Head {
        compact()
        var searchFrom = start
        while true {
            switch Self.find(buffer, from: searchFrom, start: start) {
            case .end(let end):
                let head = Array(buffer[start..<end])
                start = end
                return .head(head)
            case .bareLF:
                return .bareLF
            case .none:
                break
            }
            if buffered > limit { return .tooLarge }
            searchFrom = Swift.max(start, buffer.count - 3)
            let n = fill()
            if n == 0 { return buffered == 0 ? .end : .failed }
            if n < 0 { return .failed }
        }
    }

    enum Found { case end(Int), bareLF, none }

    /// The index just past the first CRLF CRLF at or after `from`, or a LF without its CR
    /// before it (refused at once rather than waited on: it is never a head's end here).
    private static func find(_ b: [UInt8], from: Int, start: Int) -> Found {
        var i = Swift.max(from, start)
        while i < b.count {
            if b[i] == 10 && (i == start || b[i - 1] != 13) { return .bareLF }
            if i + 3 < b.count && b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return .end(i + 4) }
            i += 1
        }
        return .none
    }

    /// Up to `count` buffered or freshly read bytes: > 0 copied, 0 end of stream, -1 failure.
    func read(into out: UnsafeMutableRawBufferPointer, count: Int) -> Int {
        if buffered == 0 {
            compact()
            let n = fill()
            if n <= 0 { return n }
        }
        let take = min(count, buffered, out.count)
        buffer.withUnsafeBytes { src in out.baseAddress!.copyMemory(from: src.baseAddress! + start, byteCount: take) }
        start += take
        return take
    }

    /// One line (without its CRLF) of at most `max` bytes, for chunked bodies.
    func readLine(limit: Int) -> [UInt8]? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 10) {
                guard nl > start, buffer[nl - 1] == 13 else { return nil }
                let line = Array(buffer[start..<(nl - 1)])
                start = nl + 1
                return line
            }
            if buffered > limit { return nil }
            if fill() <= 0 { return nil }
        }
    }

    /// Writes everything (waiting while the sandbox does not read, up to the timeout). False
    /// when the connection is gone.
    @discardableResult
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = send(fd, bytes.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let r = poll(&p, 1, timeoutMs)
                if r < 0 && errno == EINTR { continue }
                if r <= 0 || p.revents & Int16(POLLERR | POLLHUP) != 0 { return false }
                continue
            }
            return false
        }
        return true
    }

    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { write($0) } }
}

/// Why the proxy refused what the sandbox sent: one sentence.
struct EgressRefusal: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// A request head from the sandbox, parsed strictly: one request line with an absolute URL,
/// token names, no folded lines, no bare CR or LF, at most one length, chunked as the only
/// transfer coding and never together with a length (nothing two servers could frame differently).
struct EgressRequestHead {
    var method: String
    var target: String
    var http10: Bool
    var headers: [(name: String, value: String)]
    var contentLength: Int64?
    var chunked: Bool
    var keepAlive: Bool

    var hasBody: Bool { chunked || (contentLength ?? 0) > 0 }

    static func parse(_ bytes: [UInt8]) -> Result<EgressRequestHead, EgressRefusal> {
        guard bytes.count >= 4 else { return .failure(EgressRefusal("The request is empty.")) }
        let body = bytes[0..<(bytes.count - 4)]
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = body.startIndex
        var i = body.startIndex
        while i < body.endIndex {
            if body[i] == 13 {
                guard i + 1 < body.endIndex, body[i + 1] == 10 else { return .failure(EgressRefusal("The request has a bare CR.")) }
                lines.append(body[lineStart..<i])
                i += 2
                lineStart = i
                continue
            }
            if body[i] == 10 { return .failure(EgressRefusal("The request has a bare LF.")) }
            i += 1
        }
        lines.append(body[lineStart..<body.endIndex])
        guard let requestLine = lines.first.map({ String(decoding: $0, as: UTF8.self) }) else { return .failure(EgressRefusal("The request is empty.")) }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenChar), !parts[1].isEmpty,
              parts[1].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            return .failure(EgressRefusal("The request line is not METHOD URL HTTP/1.1."))
        }
        guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else { return .failure(EgressRefusal("Only HTTP/1.1 is spoken here.")) }
        var head = EgressRequestHead(method: String(parts[0]), target: String(parts[1]), http10: parts[2] == "HTTP/1.0", headers: [],
                                     contentLength: nil, chunked: false, keepAlive: parts[2] == "HTTP/1.1")
        var sawTransferEncoding = false
        for raw in lines.dropFirst() {
            guard let first = raw.first, first != 0x20, first != 0x09 else { return .failure(EgressRefusal("The request has a folded or empty header line.")) }
            guard let colon = raw.firstIndex(of: UInt8(ascii: ":")), colon > raw.startIndex else { return .failure(EgressRefusal("A header line has no name.")) }
            let nameBytes = raw[raw.startIndex..<colon]
            guard nameBytes.allSatisfy({ isTokenByte($0) }) else { return .failure(EgressRefusal("A header name is not a token.")) }
            let valueBytes = raw[(colon + 1)...]
            guard valueBytes.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else { return .failure(EgressRefusal("A header value holds a control character.")) }
            let name = String(decoding: nameBytes, as: UTF8.self)
            let value = String(decoding: valueBytes, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            switch name.lowercased() {
            case "content-length":
                guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int64(value) else {
                    return .failure(EgressRefusal("Content-Length is not a number."))
                }
                if let old = head.contentLength, old != n { return .failure(EgressRefusal("The request has two different Content-Lengths.")) }
                head.contentLength = n
            case "transfer-encoding":
                guard !sawTransferEncoding, value.lowercased() == "chunked" else { return .failure(EgressRefusal("Only Transfer-Encoding: chunked is accepted, once.")) }
                sawTransferEncoding = true
                head.chunked = true
            case "connection":
                let tokens = value.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                if tokens.contains("close") { head.keepAlive = false }
                if head.http10 && tokens.contains("keep-alive") { head.keepAlive = true }
            default: break
            }
            head.headers.append((name, value))
        }
        if head.chunked && head.contentLength != nil { return .failure(EgressRefusal("The request has both Content-Length and Transfer-Encoding.")) }
        return .success(head)
    }

    static func isTokenChar(_ c: Character) -> Bool { c.utf8.count == 1 && isTokenByte(c.utf8.first!) }

    static func isTokenByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }

    /// The absolute URL's target and its path with query (`/` when empty); errors are sentences.
    func absoluteTarget() -> Result<(EgressTarget, String), EgressRefusal> {
        guard let sep = target.range(of: "://") else {
            return .failure(EgressRefusal("Requests through the egress proxy must name an absolute URL (GET https://host/path HTTP/1.1)."))
        }
        let scheme = target[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return .failure(EgressRefusal("Only http and https URLs can be reached.")) }
        let rest = target[sep.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = String(rest[..<authorityEnd])
        var path = String(rest[authorityEnd...])
        guard !path.contains("#") else { return .failure(EgressRefusal("A URL with a fragment (#) cannot be sent.")) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.isEmpty, !authority.contains("@") else { return .failure(EgressRefusal("The URL has no host, or has credentials in it.")) }
        let split: (String, Int?)
        do {
            split = try PostHogEndpoints.splitHostPort(authority) { RunnerError(.badInput, "The URL's host is not valid (\($0)).") }
        } catch {
            return .failure(EgressRefusal("\(error)"))
        }
        let port = split.1 ?? (scheme == "https" ? 443 : 80)
        return .success((EgressTarget(scheme: scheme, host: split.0, port: port), path))
    }
}

/// Reads a request body from the sandbox as it is framed (a length, or chunks), for libcurl's
/// read callback: what it returns is the decoded body.
final class EgressBodyReader {
    enum Mode { case length(Int64), chunked }
    private let client: EgressClientConnection
    private let mode: Mode
    private var remaining: Int64
    private var chunkLeft: Int64 = 0
    private(set) var finished = false
    private(set) var failed = false

    init(client: EgressClientConnection, head: EgressRequestHead) {
        self.client = client
        if head.chunked { mode = .chunked; remaining = 0 } else { mode = .length(head.contentLength ?? 0); remaining = head.contentLength ?? 0 }
        if case .length(0) = mode { finished = true }
    }

    /// > 0 bytes written to `out`, 0 at the body's end, -1 when the sandbox broke its framing or left.
    func read(into out: UnsafeMutableRawBufferPointer) -> Int {
        if finished { return 0 }
        if failed { return -1 }
        switch mode {
        case .length:
            let n = client.read(into: out, count: Int(min(Int64(out.count), remaining)))
            if n <= 0 { failed = true; return -1 }
            remaining -= Int64(n)
            if remaining == 0 { finished = true }
            return n
        case .chunked:
            if chunkLeft == 0 {
                guard let line = client.readLine(limit: 1024) else { failed = true; return -1 }
                let sizeText = line.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
                guard !sizeText.isEmpty, sizeText.count <= 15,
                      let size = Int64(String(decoding: sizeText, as: UTF8.self).trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                    failed = true
                    return -1
                }
                if size == 0 {
                    // Trailers, then the blank line.
                    while true {
                        guard let t = client.readLine(limit: 8192) else { failed = true; return -1 }
                        if t.isEmpty { break }
                    }
                    finished = true
                    return 0
                }
                chunkLeft = size
            }
            let n = client.read(into: out, count: Int(min(Int64(out.count), chunkLeft)))
            if n <= 0 { failed = true; return -1 }
            chunkLeft -= Int64(n)
            if chunkLeft == 0 {
                guard let crlf = client.readLine(limit: 2), crlf.isEmpty else { failed = true; return -1 }
            }
            return n
        }
    }
}

enum EgressReason {
    static func phrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 413: return "Payload Too Large"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Status"
        }
    }
}
