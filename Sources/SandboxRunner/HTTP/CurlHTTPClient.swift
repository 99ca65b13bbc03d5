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
    public var description: String { message }
}

/// Blocking HTTP over libcurl (TLS verification on, proxies from the environment honoured).
/// One easy handle per call here; callers keep it off the cooperative pool.
public enum CurlHTTPClient {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public static func request(method: String = "GET", url: String, headers: [String: String] = [:], body: [UInt8]? = nil,
                               timeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(5),
                               maxBodyBytes: Int = 8 << 20) throws -> HTTPResponse {
        _ = globalInit
        guard let h = curl_easy_init() else { throw HTTPError(code: -1, message: "libcurl could not create a handle.") }
        defer { curl_easy_cleanup(h) }
        let sink = ResponseSink(limit: maxBodyBytes)
        var list: UnsafeMutablePointer<curl_slist>?
        for (k, v) in headers.sorted(by: { $0.key < $1.key }) { list = curl_slist_append(list, "\(k): \(v)") }
        defer { curl_slist_free_all(list) }

        sr_curl_setopt_string(h, CURLOPT_URL, url)
        sr_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
        sr_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        sr_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds))
        sr_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds))
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1)
        sr_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2)
        sr_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list)
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        sr_curl_setopt_pointer(h, CURLOPT_WRITEDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_WRITEFUNCTION) { ptr, size, n, ud in
            let sink = Unmanaged<ResponseSink>.fromOpaque(ud!).takeUnretainedValue()
            let count = size * n
            if sink.body.count + count > sink.limit { return 0 }
            sink.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: count))
            return count
        }
        sr_curl_setopt_pointer(h, CURLOPT_HEADERDATA, ctx)
        sr_curl_setopt_data_cb(h, CURLOPT_HEADERFUNCTION) { ptr, size, n, ud in
            let sink = Unmanaged<ResponseSink>.fromOpaque(ud!).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: size * n), as: UTF8.self)
            if let colon = line.firstIndex(of: ":") {
                sink.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return size * n
        }
        let code: CURLcode = try { () throws -> CURLcode in
            guard let body else { return curl_easy_perform(h) }
            return body.withUnsafeBytes { raw in
                sr_curl_setopt_long(h, CURLOPT_POSTFIELDSIZE, raw.count)
                sr_curl_setopt_pointer(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress))
                return curl_easy_perform(h)
            }
        }()
        guard code == CURLE_OK else {
            let what = String(cString: curl_easy_strerror(code))
            throw HTTPError(code: Int32(code.rawValue), message: "\(method) \(redactQuery(url)) failed: \(what).")
        }
        var status = 0
        sr_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    /// URLs are shown without their query string (a key may hide there).
    static func redactQuery(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
}

private final class ResponseSink {
    let limit: Int
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    init(limit: Int) { self.limit = limit }
}
