import CCurl
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The proxy's side towards the allowed hosts: one libcurl easy handle per connection from the
/// sandbox (so its upstream connection is kept alive and reused), TLS verified, no redirects
/// followed, no proxy from the environment, connecting only to the addresses the rules checked
/// (CURLOPT_RESOLVE pins them: a second lookup cannot rebind the name). Bodies stream both
/// ways through the callbacks, so memory stays flat whatever the size.
final class EgressUpstream {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()
    private let handle: UnsafeMutableRawPointer

    init?() {
        _ = Self.globalInit
        guard let h = curl_easy_init() else { return nil }
        handle = h
    }

    deinit { curl_easy_cleanup(handle) }

    enum Failure {
        /// Nothing reached the host (name, connection, TLS).
        case unreachable(String)
        case timeout(String)
        /// The exchange broke after it started.
        case broken(String)
        /// A byte cap of the run was reached.
        case cap(String)
        /// The sandbox's side broke its framing or went away.
        case client
    }

    struct Outcome {
        var status = 0
        var bytesOut: Int64 = 0
        var bytesIn: Int64 = 0
        /// The answer's head reached the sandbox (after that, a failure can only close the connection).
        var headSent = false
        /// The connection to the sandbox can carry another request.
        var reusable = false
        var failure: Failure?
    }

    /// What one exchange needs inside libcurl's callbacks.
    final class Transfer {
        let client: EgressClientConnection
        let body: EgressBodyReader?
        let isHead: Bool
        let closeDelimited: Bool
        var keepAlive: Bool
        let limits: EgressLimits
        let log: EgressLog
        let stopped: () -> Bool
        var status = 0
        var headers: [(String, String)] = []
        var headSent = false
        var chunkedOut = false
        var bytesOut: Int64 = 0
        var bytesIn: Int64 = 0
        var capHit = false
        var clientFailed = false

        init(client: EgressClientConnection, body: EgressBodyReader?, isHead: Bool, closeDelimited: Bool, keepAlive: Bool,
             limits: EgressLimits, log: EgressLog, stopped: @escaping () -> Bool) {
            self.client = client
            self.body = body
            self.isHead = isHead
            self.closeDelimited = closeDelimited
            self.keepAlive = keepAlive
            self.limits = limits
            self.log = log
            self.stopped = stopped
        }

        /// Response headers that belong to one hop only, or that the proxy frames itself.
        static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                                            "upgrade", "content-length", "proxy-authenticate"]

        func sendHead() -> Bool {
            headSent = true
            var text = "HTTP/1.1 \(status) \(EgressReason.phrase(status))\r\n"
            var length: String?
            var upstreamChunked = false
            for (name, value) in headers {
                let lower = name.lowercased()
                if lower == "content-length" { length = value }
                if lower == "transfer-encoding" { upstreamChunked = true }
                if Self.hopByHop.contains(lower) { continue }
                text += "\(name): \(value)\r\n"
            }
            let noBody = isHead || status == 204 || status == 304 || (100..<200).contains(status)
            if noBody {
                if isHead, let length { text += "Content-Length: \(length)\r\n" }
                if status != 204 && status != 304 && !isHead { text += "Content-Length: 0\r\n" }
            } else if let length, !upstreamChunked {
                text += "Content-Length: \(length)\r\n"
            } else if closeDelimited {
                keepAlive = false
            } else {
                text += "Transfer-Encoding: chunked\r\n"
                chunkedOut = true
            }
            text += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n"
            if !client.write(Array(text.utf8)) { clientFailed = true; return false }
            return true
        }

        func sendBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
            if !headSent && !sendHead() { return false }
            guard chunk.count > 0 else { return true }
            if !chunkedOut {
                if client.write(chunk) { return true }
                clientFailed = true
                return false
            }
            var framed = Array(String(chunk.count, radix: 16).utf8) + [13, 10]
            if chunk.count <= 64 << 10 {
                framed.append(contentsOf: chunk)
                framed += [13, 10]
                if client.write(framed) { return true }
            } else if client.write(framed), client.write(chunk), client.write([13, 10]) {
                return true
            }
            clientFailed = true
            return false
        }

        func finish() -> Bool {
            if !headSent && !sendHead() { return false }
            if chunkedOut && !client.write(Array("0\r\n\r\n".utf8)) { clientFailed = true; return false }
            return true
        }
    }

    /// Forwards one request and streams its answer to the sandbox.
    func forward(method: String, target: EgressTarget, pathAndQuery: String, addresses: [EgressAddress],
                 headers: [(name: String, value: String)], head: EgressRequestHead, client: EgressClientConnection,
                 limits: EgressLimits, log: EgressLog, stopped: @escaping () -> Bool) -> Outcome {
        let h = handle
        curl_easy_reset(h)
        let body = head.hasBody ? EgressBodyReader(client: client, head: head) : nil
        let transfer = Transfer(client: client, body: body, isHead: method == "HEAD", closeDelimited: head.http10, keepAlive: head.keepAlive,
                                limits: limits, log: log, stopped: stopped)
        let hostInURL = EgressAddress(target.host)?.isIPv6 == true ? "[\(target.host)]" : target.host
        let url = "\(target.scheme)://\(hostInURL):\(target.port)\(pathAndQuery)"

        var list: UnsafeMutablePointer<curl_slist>?
        for (name, value) in headers { list = curl_slist_append(list, "\(name): \(value)") }
        // No "Expect: 100-continue" pause, and no default form Content-Type for a body without one.
        list = curl_slist_append(list, "Expect:")
        if head.hasBody && !headers.contains(where: { $0.name.lowercased() == "content-type" }) { list = curl_slist_append(list, "Content-Type:") }
        defer { curl_slist_free_all(list) }
        var resolve: UnsafeMutablePointer<curl_slist>?
        if EgressAddress(target.host) == nil {
            resolve = curl_slist_append(nil, "\(target.host):\(target.port):" + addresses.map(\.bracketed).joined(separator: ","))
        }
        defer { if let resolve { curl_slist_free_all(resolve) } }

        sr_curl_setopt_string(h, CURLOPT_URL, url)
        sr_curl_setopt_long(h, CURLOPT_PATH_AS_IS, 1)
        sr_curl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "http,https")
        sr_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0)
        sr_curl_setopt_string(h, CURLOPT_PROXY, "")
        sr_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1)
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2)
        if let ca = limits.caFile { sr_curl_setopt_string(h, CURLOPT_CAINFO, ca) }
        sr_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, 10_000)
        // A stalled answer ends after the idle timeout; a slow but moving one (an export) goes on.
        sr_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, 1)
        sr_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(30, Int(limits.idleTimeout.components.seconds)))
        sr_curl_setopt_long(h, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        sr_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
        if let resolve { sr_curl_setopt_slist(h, CURLOPT_RESOLVE, resolve) }
        sr_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        switch method {
        case "HEAD": sr_curl_setopt_long(h, CURLOPT_NOBODY, 1)
        case "GET" where body == nil: sr_curl_setopt_long(h, CURLOPT_HTTPGET, 1)
        default:
            if body != nil {
                sr_curl_setopt_long(h, CURLOPT_POST, 1)
                sr_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, head.chunked ? -1 : curl_off_t(head.contentLength ?? 0))
            } else if method == "POST" {
                sr_curl_setopt_long(h, CURLOPT_POST, 1)
                sr_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, 0)
                sr_curl_setopt_string(h, CURLOPT_POSTFIELDS, "")
            }
            if method != "POST" { sr_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method) }
        }
        let ctx = Unmanaged.passUnretained(transfer).toOpaque()
        sr_curl_setopt_pointer(h, CURLOPT_READDATA, ctx)
        sr_curl_setopt_read_cb(h, CURLOPT_READFUNCTION) { buf, size, n, ud in
            let t = Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue()
            guard let body = t.body, let buf else { return 0 }
            let got = body.read(into: UnsafeMutableRawBufferPointer(start: buf, count: size * n))
            if got < 0 { t.clientFailed = true; return Int(CURL_READFUNC_ABORT) }
            if got > 0 && !t.log.spend(out: Int64(got), limits: t.limits) { t.capHit = true; return Int(CURL_READFUNC_ABORT) }
            t.bytesOut += Int64(got)
            return got
        }
        sr_curl_setopt_pointer(h, CURLOPT_HEADERDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, n, ud in
            let t = Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue()
            let count = size * n
            guard !t.headSent, let ptr else { return count }
            t.bytesIn += Int64(count)
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                // A new status line (after a 100): start over.
                t.headers = []
                let parts = line.split(separator: " ")
                t.status = parts.count > 1 ? Int(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 : 0
            } else if let colon = line.firstIndex(of: ":") {
                let name = String(line[..<colon])
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
                if name.utf8.allSatisfy(EgressRequestHead.isTokenByte) && value.utf8.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) {
                    t.headers.append((name, value))
                }
            }
            return count
        }
        sr_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, n, ud in
            let t = Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue()
            let count = size * n
            if !t.log.spend(in: Int64(count), limits: t.limits) { t.capHit = true; return 0 }
            t.bytesIn += Int64(count)
            return t.sendBody(UnsafeRawBufferPointer(start: ptr, count: count)) ? count : 0
        }
        sr_curl_setopt_pointer(h, CURLOPT_XFERINFODATA, ctx)
        sr_curl_setopt_xferinfo_cb(h, CURLOPT_XFERINFOFUNCTION) { ud, _, _, _, _ in
            let t = Unmanaged<Transfer>.fromOpaque(ud!).takeUnretainedValue()
            return t.stopped() ? 1 : 0
        }
        sr_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0)

        let code = curl_easy_perform(h)
        var outcome = Outcome()
        outcome.bytesOut = transfer.bytesOut
        outcome.bytesIn = transfer.bytesIn
        if code == CURLE_OK {
            var status = 0
            sr_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
            if transfer.status == 0 { transfer.status = status }
            outcome.status = transfer.status
            if !transfer.finish() { outcome.failure = .client }
        } else if transfer.capHit {
            outcome.failure = .cap("the run's egress byte cap (\(limits.maxBytesOut) out, \(limits.maxBytesIn) in) was reached")
        } else if transfer.clientFailed || (body?.failed ?? false) {
            outcome.failure = .client
        } else {
            let what = String(cString: curl_easy_strerror(code))
            switch code {
            case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION,
                 CURLE_SSL_CACERT_BADFILE, CURLE_UNSUPPORTED_PROTOCOL:
                outcome.failure = .unreachable("\(target) could not be reached: \(what)")
            case CURLE_OPERATION_TIMEDOUT:
                outcome.failure = .timeout("\(target) did not answer in time: \(what)")
            case CURLE_ABORTED_BY_CALLBACK:
                outcome.failure = .broken("the run ended while \(target) was answering")
            default:
                outcome.failure = .broken("the exchange with \(target) broke: \(what)")
            }
        }
        outcome.headSent = transfer.headSent
        outcome.reusable = outcome.failure == nil && transfer.keepAlive && (body?.finished ?? true)
        return outcome
    }
}
