import Foundation
import Testing
@testable import SandboxRunner

@Suite("Connect envelopes")
struct ConnectEnvelopeTests {
    func stream() -> [UInt8] {
        let events: [String] = [
            #"{"event":{"start":{"pid":7}}}"#,
            #"{"event":{"data":{"stdout":"aGVsbG8K"}}}"#,          // "hello\n"
            #"{"event":{"keepalive":{}}}"#,
            #"{"event":{"data":{"stderr":"b29wcwo="}}}"#,          // "oops\n"
            #"{"event":{"end":{"exited":true,"status":"exit status 0"}}}"#,
        ]
        var bytes: [UInt8] = []
        for e in events { bytes += ConnectEnvelope.encode(Array(e.utf8)) }
        bytes += ConnectEnvelope.encode(Array("{}".utf8), flag: ConnectEnvelope.endStreamFlag)
        return bytes
    }

    /// However the bytes are cut into chunks, the same events come out.
    @Test(arguments: [1, 2, 3, 5, 7, 64, 4096])
    func decodesAcrossAnyChunking(chunk: Int) throws {
        var decoder = ConnectEnvelope.Decoder()
        var result = E2BProcessResult(pid: nil, exitCode: -1, signalled: false, timedOut: false, stdout: CappedOutput(limit: 100),
                                      stderr: CappedOutput(limit: 100), incomplete: true, streamError: nil)
        let all = stream()
        var frames = 0
        for start in stride(from: 0, to: all.count, by: chunk) {
            let piece = Array(all[start..<min(all.count, start + chunk)])
            for f in try piece.withUnsafeBytes({ try decoder.feed($0) }) {
                E2BClient.apply(f, to: &result)
                frames += 1
            }
        }
        #expect(frames == 6)
        #expect(decoder.pending == 0)
        #expect(result.pid == 7)
        #expect(result.exitCode == 0)   // omitted by proto3 JSON: zero
        #expect(!result.incomplete)
        #expect(result.stdout.text == "hello\n")
        #expect(result.stderr.text == "oops\n")
    }

    @Test func endOfStreamErrorAndSignal() throws {
        var decoder = ConnectEnvelope.Decoder()
        var result = E2BProcessResult(pid: nil, exitCode: -1, signalled: false, timedOut: false, stdout: CappedOutput(limit: 10),
                                      stderr: CappedOutput(limit: 10), incomplete: true, streamError: nil)
        let bytes = ConnectEnvelope.encode(Array(#"{"event":{"end":{"exitCode":-1,"exited":false,"status":"signal: killed"}}}"#.utf8))
            + ConnectEnvelope.encode(Array(#"{"error":{"code":"deadline_exceeded","message":"too slow"}}"#.utf8), flag: 2)
        for f in try bytes.withUnsafeBytes({ try decoder.feed($0) }) { E2BClient.apply(f, to: &result) }
        #expect(result.signalled)
        #expect(result.streamError == "deadline_exceeded")
    }

    @Test func refusesAbsurdLengths() {
        var decoder = ConnectEnvelope.Decoder()
        let bytes: [UInt8] = [0, 0x7f, 0xff, 0xff, 0xff]
        #expect(throws: RunnerError.self) { try bytes.withUnsafeBytes { try decoder.feed($0) } }
    }
}
