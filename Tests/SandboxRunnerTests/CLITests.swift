import Foundation
import Testing
@testable import SandboxRunner

/// The built `sandbox-runner` binary, run from outside the checkout.
@Suite("CLI", .timeLimit(.minutes(3)))
struct CLITests {
    let fixtures = ["--templates-dir", Repo.fixtureTemplates.path]

    @Test func listShowsBuiltInAndCustomTemplates() throws {
        let r = try runCLI(["list"] + fixtures)
        #expect(r.status == 0)
        #expect(r.stdout.contains("identify_churn_risk"))
        #expect(r.stdout.contains("echo_vars"))
        #expect(r.stdout.contains("[custom]"))
        let j = try runCLI(["list", "--json"], environment: ["SANDBOX_RUNNER_TEMPLATES": Repo.fixtureTemplates.path])
        #expect(j.status == 0)
        let names = j.json?["templates"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(names.contains("echo_vars"))
        #expect(names.contains("identify_churn_risk"))
    }

    @Test func showDescribesVariables() throws {
        let r = try runCLI(["show", "echo_vars"] + fixtures)
        #expect(r.status == 0)
        #expect(r.stdout.contains("days (integer, min 1, max 90, default 7)"))
        #expect(r.stdout.contains("who (string, required)"))
        let j = try runCLI(["show", "echo_vars", "--json"] + fixtures)
        #expect(j.json?["name"] == .string("echo_vars"))
    }

    @Test func runPrintsTheResultDocument() throws {
        let r = try runCLI(["run", "echo_vars", "--var", "who=ana", "--var", "days=9", "--json"] + fixtures)
        #expect(r.status == 0, "\(r.stderr)")
        let doc = try #require(r.json)
        #expect(doc["success"] == .bool(true))
        #expect(doc["error"] == .null)
        #expect(doc["data"]?["who"] == .string("ana"))
        #expect(doc["data"]?["days"] == .int(9))
        #expect(doc["backend"] == .string("local"))
        for key in ["output", "exitCode", "durationMs", "template", "runId", "stderr", "truncated"] {
            #expect(doc[key] != nil, "missing \(key)")
        }
    }

    @Test(arguments: [
        (["run", "echo_vars", "--var", "who=a", "--var", "days=abc"], "'days'"),
        (["run", "echo_vars", "--var", "who=a", "--var", "days=1000"], "'days'"),
        (["run", "echo_vars"], "'who'"),
        (["run", "echo_vars", "--var", "who=a", "--var", "nope=1"], "'nope'"),
        (["run", "echo_vars", "--var", "who=a", "--var", "event=a'b"], "'event'"),
        (["run", "no_such_template"], "no_such_template"),
        (["run", "echo_vars", "--var", "who"], "name=value"),
        (["run", "echo_vars", "--var", "who=a", "--backend", "moon"], "moon"),
        (["run", "echo_vars", "--var", "who=a", "--timeout", "0"], "timeout"),
    ])
    func badInputExits64(args: [String], mentions: String) throws {
        let r = try runCLI(args + fixtures)
        #expect(r.status == 64, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect((r.stderr + r.stdout).contains(mentions))
    }

    @Test func execExitCodes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fail = dir.appendingPathComponent("fail.py")
        try "import sys\nprint('x')\nsys.exit(2)\n".write(to: fail, atomically: true, encoding: .utf8)
        let slow = dir.appendingPathComponent("slow.py")
        try "import time\nprint('tick', flush=True)\ntime.sleep(60)\n".write(to: slow, atomically: true, encoding: .utf8)
        let r1 = try runCLI(["exec", fail.path, "--json"])
        #expect(r1.status == 1)
        #expect(r1.json?["exitCode"] == .int(2))
        let r2 = try runCLI(["exec", slow.path, "--timeout", "1", "--json"])
        #expect(r2.status == 124)
        #expect(r2.json?["output"] == .string("tick\n"))
        #expect(r2.json?["timedOut"] == .bool(true))
        let r3 = try runCLI(["exec", dir.appendingPathComponent("missing.py").path])
        #expect(r3.status == 64)
    }

    @Test func dotenvIsReadAndSecretsRedacted() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = "phx_fromdotenv_\(UUID().uuidString.prefix(8))"
        try "POSTHOG_PERSONAL_API_KEY=\(secret)\nPOSTHOG_PROJECT_ID=77\n".write(to: dir.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        try "import os\nprint(os.environ['POSTHOG_PERSONAL_API_KEY'], os.environ['POSTHOG_PROJECT_ID'], len(os.environ['POSTHOG_PERSONAL_API_KEY']))\n"
            .write(to: dir.appendingPathComponent("s.py"), atomically: true, encoding: .utf8)
        let r = try runCLI(["exec", "s.py"], in: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stdout.contains(secret))
        #expect(r.json?["output"] == .string("[REDACTED] 77 \(secret.count)\n"))
        // The real environment wins over .env.
        let r2 = try runCLI(["exec", "s.py"], environment: ["POSTHOG_PROJECT_ID": "5"], in: dir.path)
        #expect(r2.json?["output"]?.stringValue?.contains(" 5 ") == true)
    }

    @Test func doctorReportsIsolation() throws {
        let r = try runCLI(["doctor", "--json"])
        #expect(r.status == 0)
        #expect(r.json?["isolation"] == .string("bubblewrap"))
    }
}
