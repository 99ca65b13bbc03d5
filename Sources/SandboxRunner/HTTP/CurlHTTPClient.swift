import CCurl
import Foundation

/// A plain HTTP answer.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A failed HTTP exchange: what curl said, never the request's headers (they may hold keys).
public struct HTTPError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    /// True when the total timeout ended the exchange.
    public var timedOut: Bool { code == Int32(CURLE_OPERATION_TIMEDOUT.rawValue) }
    /// True when the caller aborted it (cancellation, or a body callback that asked to stop).
    public var aborted: Bool { code == Int32(CURLE_ABORTED_BY_CALLBACK.rawValue) || code == Int32(CURLE_WRITE_ERROR.rawValue) }
    public var description: String { message }
}

/// How a handle reaches its servers beyond the URL: which CAs to trust and where to connect.
public struct CurlConnectionOptions: Sendable, Equatable {
    /// A PEM file of the CAs to trust instead of the system's (E2B_CA_FILE: a self-signed e2b-local).
    public var caFile: String?
    /// Connect every request to this `host:port` instead of the URL's, keeping the URL's host for
    /// TLS (SNI, certificate name) and the Host header: libcurl's CURLOPT_CONNECT_TO with an empty
    /// source, as when a real E2B domain is served from loopback.
    public var connectTo: String?

    public init(caFile: String? = nil, connectTo: String? = nil) {
        self.caFile = caFile
        self.connectTo = connectTo
    }
}

/// One libcurl easy handle, owned here and freed in deinit. Reusing it across requests reuses
/// connections (keep-alive, HTTP/2 where offered). TLS verification is on; proxies come from the
/// environment (libcurl reads http_proxy/https_proxy/no_proxy). Blocking: call it from a
/// dedicated thread, never the cooperative pool.
public final class CurlEasy: @unchecked Sendable {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()
    private let handle: UnsafeMutableRawPointer
    private let lock = NSLock()
    private var cancelled = false
    public let options: CurlConnectionOptions

    public init(options: CurlConnectionOptions = CurlConnectionOptions()) throws {
        self.options = options
        try LazyLibrary.require(.curl)
        _ = Self.globalInit
        guard let h = curl_easy_init() else { throw HTTPError(code: -1, message: "libcurl could not create a handle.") }
        handle = h
    }

    deinit { curl_easy_cleanup(handle) }

    /// Makes the request in progress (and any later one) stop at once.
    public func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }

    /// Performs one request. With `onBody`, the body is handed over chunk by chunk as it arrives
    /// (return false to stop) and not kept; otherwise it is kept up to `maxBodyBytes`.
    public func perform(method: String = "GET", url: String, headers: [String: String] = [:], body: [UInt8]? = nil,
                        timeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(10), maxBodyBytes: Int = 8 << 20,
                        onBody: ((UnsafeRawBufferPointer) -> Bool)? = nil) throws -> HTTPResponse {
        let h = handle
        curl_easy_reset(h)
        let state = TransferState(limit: maxBodyBytes, onBody: onBody, owner: self)
        var list: UnsafeMutablePointer<curl_slist>?
        for (k, v) in headers.sorted(by: { $0.key < $1.key }) { list = curl_slist_append(list, "\(k): \(v)") }
        // We send no body of unknown size; refuse curl's "Expect: 100-continue" pause.
        list = curl_slist_append(list, "Expect:")
        defer { curl_slist_free_all(list) }
        // "::HOST:PORT": any host and port of the URL connects to HOST:PORT.
        let connectTo = options.connectTo.map { curl_slist_append(nil, "::\($0)") } ?? nil
        defer { if let connectTo { curl_slist_free_all(connectTo) } }

        sr_curl_setopt_string(h, CURLOPT_URL, url)
        sr_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
        if method == "HEAD" { sr_curl_setopt_long(h, CURLOPT_NOBODY, 1) }
        sr_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        sr_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds))
        sr_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds))
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1)
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2)
        if let ca = options.caFile { sr_curl_setopt_string(h, CURLOPT_CAINFO, ca) }
        if let connectTo { sr_curl_setopt_slist(h, CURLOPT_CONNECT_TO, connectTo) }
        sr_curl_setopt_long(h, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        sr_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
        sr_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        let ctx = Unmanaged.passUnretained(state).toOpaque()
        sr_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, n, ud in
            let state = Unmanaged<TransferState>.fromOpaque(ud!).takeUnretainedValue()
            let count = size * n
            let chunk = UnsafeRawBufferPointer(start: ptr, count: count)
            if let onBody = state.onBody, state.status == 0 || (200..<300).contains(state.status) {
                return onBody(chunk) ? count : 0
            }
            if state.body.count + count > state.limit { return 0 }
            state.body.append(contentsOf: chunk)
            return count
        }
        sr_curl_setopt_pointer(h, CURLOPT_HEADERDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, n, ud in
            let state = Unmanaged<TransferState>.fromOpaque(ud!).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: size * n), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                // A new status line (after a 100 or a redirect): start over.
                state.headers = [:]
                let parts = line.split(separator: " ")
                state.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            } else if let colon = line.firstIndex(of: ":") {
                state.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return size * n
        }
        sr_curl_setopt_pointer(h, CURLOPT_XFERINFODATA, ctx)
        sr_curl_setopt_xferinfo_cb(h, CURLOPT_XFERINFOFUNCTION) { ud, _, _, _, _ in
            let state = Unmanaged<TransferState>.fromOpaque(ud!).takeUnretainedValue()
            return state.owner.isCancelled ? 1 : 0
        }
        sr_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0)
        if isCancelled { throw HTTPError(code: Int32(CURLE_ABORTED_BY_CALLBACK.rawValue), message: "\(method) \(Self.redactQuery(url)) was cancelled.") }

        let code: CURLcode = {
            guard let body else { return curl_easy_perform(h) }
            return body.withUnsafeBytes { raw in
                sr_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(raw.count))
                sr_curl_setopt_pointer(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
                return curl_easy_perform(h)
            }
        }()
        guard code == CURLE_OK else {
            let what = String(cString: curl_easy_strerror(code))
            throw HTTPError(code: Int32(code.rawValue), message: "\(method) \(Self.redactQuery(url)) failed: \(what).")
        }
        var status = 0
        sr_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: state.headers, body: state.body)
    }

    /// URLs are shown without their query string (a key may hide there).
    static func redactQuery(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
}

private final class TransferState {
    let limit: Int
    let onBody: ((UnsafeRawBufferPointer) -> Bool)?
    unowned let owner: CurlEasy
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var status = 0
    init(limit: Int, onBody: ((UnsafeRawBufferPointer) -> Bool)?, owner: CurlEasy) {
        self.limit = limit
        self.onBody = onBody
        self.owner = owner
    }
}

/// One-off requests on a fresh handle.
public enum CurlHTTPClient {
    public static func request(method: String = "GET", url: String, headers: [String: String] = [:], body: [UInt8]? = nil,
                               timeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(5),
                               maxBodyBytes: Int = 8 << 20, options: CurlConnectionOptions = CurlConnectionOptions()) throws -> HTTPResponse {
        try CurlEasy(options: options).perform(method: method, url: url, headers: headers, body: body, timeout: timeout,
                               connectTimeout: connectTimeout, maxBodyBytes: maxBodyBytes)
    }
}
