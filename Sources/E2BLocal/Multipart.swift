import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `multipart/form-data` body split into its parts (RFC 7578), enough for envd uploads.
enum Multipart {
    struct Part {
        var name: String?
        var filename: String?
        var data: [UInt8]
    }

    struct Malformed: Error {
        var message: String
    }

    /// The boundary parameter of a multipart Content-Type.
    static func boundary(_ contentType: String) -> String? {
        for param in contentType.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            var v = kv[1].trimmingCharacters(in: .whitespaces)
            if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            return v.isEmpty ? nil : v
        }
        return nil
    }

    static func parse(_ body: [UInt8], boundary: String) throws -> [Part] {
        let delimiter = Array("--\(boundary)".utf8)
        let separator = Array("\r\n--\(boundary)".utf8)
        guard var start = find(delimiter, in: body, from: 0) else {
            throw Malformed(message: "The multipart body does not contain its boundary.")
        }
        var parts: [Part] = []
        var pos = start + delimiter.count
        while true {
            // After a delimiter: "--" ends the body, CRLF starts a part.
            if pos + 2 <= body.count && body[pos] == UInt8(ascii: "-") && body[pos + 1] == UInt8(ascii: "-") { break }
            guard pos + 2 <= body.count, body[pos] == 13, body[pos + 1] == 10 else {
                throw Malformed(message: "The multipart body is cut short or malformed after a boundary.")
            }
            pos += 2
            guard let headerEnd = find(Array("\r\n\r\n".utf8), in: body, from: pos) else {
                throw Malformed(message: "A multipart part has no end to its headers.")
            }
            let headerText = String(decoding: body[pos..<headerEnd], as: UTF8.self)
            let dataStart = headerEnd + 4
            guard let next = find(separator, in: body, from: dataStart) else {
                throw Malformed(message: "A multipart part has no closing boundary.")
            }
            var part = Part(data: Array(body[dataStart..<next]))
            for line in headerText.components(separatedBy: "\r\n") {
                let kv = line.split(separator: ":", maxSplits: 1)
                guard kv.count == 2, kv[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-disposition" else { continue }
                let params = dispositionParameters(String(kv[1]))
                part.name = params["name"]
                part.filename = params["filename"]
            }
            parts.append(part)
            start = next + 2
            pos = start + delimiter.count
        }
        return parts
    }

    /// `form-data; name="file"; filename="/home/user/a.txt"` → ["name": "file", "filename": …].
    static func dispositionParameters(_ value: String) -> [String: String] {
        var out: [String: String] = [:]
        var chars = Substring(value)
        while let semi = chars.firstIndex(of: ";") {
            chars = chars[chars.index(after: semi)...]
            let trimmed = chars.drop { $0 == " " }
            guard let eq = trimmed.firstIndex(of: "=") else { break }
            let key = trimmed[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var rest = trimmed[trimmed.index(after: eq)...]
            var val = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                var end = rest.endIndex
                for i in rest.indices {
                    let c = rest[i]
                    if escaped { val.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { end = i; break }
                    val.append(c)
                }
                chars = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[rest.endIndex...]
            } else {
                let end = rest.firstIndex(of: ";") ?? rest.endIndex
                val = rest[..<end].trimmingCharacters(in: .whitespaces)
                chars = rest[end...]
            }
            // Browsers and httpx percent-encode quotes and newlines inside quoted names.
            out[key] = val.replacingOccurrences(of: "%22", with: "\"").replacingOccurrences(of: "%0D", with: "\r")
                .replacingOccurrences(of: "%0A", with: "\n")
        }
        return out
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard from < haystack.count, !needle.isEmpty, haystack.count - from >= needle.count else { return nil }
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                let first = n[0]
                var i = from
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first {
                        var j = 1
                        while j < n.count && h[i + j] == n[j] { j += 1 }
                        if j == n.count { return i }
                    }
                    i += 1
                }
                return nil
            }
        }
    }
}
