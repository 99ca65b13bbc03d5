import Foundation

/// The progress a script reports while it runs. The driver (`posthog_driver._progress`) writes
/// lines `sandbox-runner-progress: {"queries": 3, "rows": 20000, "waitSeconds": 42, "note": "…"}`
/// on stderr when the runner asks for them (`SANDBOX_RUNNER_PROGRESS=1`); every field is optional,
/// counts are totals so far, `waitSeconds` > 0 starts a wait (0 ends it). The runner reads them
/// from the live output (`ProgressParser`) and shows one updating line on a terminal.
public struct ProgressState: Sendable, Equatable {
    /// Counts by name (queries, rows, or a script's own), totals so far.
    public var counts: [String: Int] = [:]
    public var note: String?
    /// The wait in progress: its length and when it began (seconds since the run's start).
    public var wait: (seconds: Double, since: Double)?

    public init() {}

    public static func == (a: ProgressState, b: ProgressState) -> Bool {
        a.counts == b.counts && a.note == b.note && a.wait?.seconds == b.wait?.seconds && a.wait?.since == b.wait?.since
    }

    /// Applies one progress document received at `now` (seconds since the run's start); counts
    /// never go down, at most 8 names are kept.
    public mutating func apply(_ doc: [String: JSONValue], at now: Double) {
        for (key, value) in doc.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "note": note = value.stringValue.map { String($0.prefix(200)) }
            case "waitSeconds":
                if let s = ReportText.number(value), s.isFinite, s > 0 { wait = (min(s, 86400), now) } else { wait = nil }
            default:
                guard let n = value.intValue, n >= 0, key.count <= 40 else { continue }
                if counts[key] == nil && counts.count >= 8 { continue }
                counts[key] = max(counts[key] ?? 0, n)
            }
        }
    }

    /// One line: "12.3 s · 5 queries · 20,000 rows · waiting 41 s (why)". `clean` makes a
    /// script's text safe (control characters escaped, secrets redacted).
    public func line(elapsed: Double, clean: (String) -> String) -> String {
        var parts = [ReportText.duration(seconds: elapsed)]
        let order = ["queries", "rows"]
        let names = counts.keys.sorted { (order.firstIndex(of: $0) ?? 9, $0) < (order.firstIndex(of: $1) ?? 9, $1) }
        for name in names {
            let n = counts[name]!
            let label = name == "queries" && n == 1 ? "query" : name
            parts.append("\(ReportText.grouped(Double(n), decimals: 0)) \(clean(label))")
        }
        if let wait {
            let left = max(0, wait.seconds - (elapsed - wait.since))
            parts.append("waiting \(Int(left.rounded(.up))) s" + (note.map { " (\(clean($0)))" } ?? ""))
        } else if let note {
            parts.append(clean(note))
        }
        return parts.joined(separator: " · ")
    }
}

/// Finds progress lines in a stream of stderr chunks (any split, any size): whole lines are
/// checked for the marker; a line longer than 4 KiB is dropped as a whole.
public struct ProgressParser: Sendable {
    private var pending: [UInt8] = []
    private var overlong = false
    static let marker = Array(Report.progressMarker.utf8)
    static let maxLine = 4096

    public init() {}

    /// The progress documents completed by this chunk.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) -> [[String: JSONValue]] {
        var docs: [[String: JSONValue]] = []
        for byte in chunk {
            if byte == 0x0A {
                if !overlong, pending.starts(with: Self.marker),
                   case .object(let o)? = JSONValue.parse(Data(pending[Self.marker.count...])) {
                    docs.append(o)
                }
                pending.removeAll(keepingCapacity: true)
                overlong = false
            } else if pending.count < Self.maxLine {
                pending.append(byte)
            } else {
                overlong = true
            }
        }
        return docs
    }
}
