import ArgumentParser
import Dispatch
import Foundation
import SandboxRunner

/// Runs one request the way every CLI verb does: optional demo server, SIGINT/SIGTERM kill the
/// sandbox, the result on stdout as `output` asks (a report for people on a terminal, else the
/// result document), progress on a terminal's stderr, the exit status from the result.
func performRun(_ request: RunRequest, options: RunOptions, output: OutputOptions, catalog: TemplateCatalog, context: Context,
                repeat times: Int = 1, files: OutputDirectoryOptions? = nil) async -> Never {
    let view = templateName(request).flatMap { catalog.templates[$0]?.manifest.view }
    let presentation = Presentation(json: options.json, output: output, view: view, environment: context.environment)
    var request = request
    let assembler: BundleAssembler
    do { assembler = try BundleAssembler(sandboxDirectory: context.locator.sandboxDirectory) } catch let e as RunnerError { fail(e) } catch { fail(RunnerError(.internalError, "\(error)")) }

    var env = context.environment
    var server: PostHogLocalServer?
    let backend: any SandboxBackend
    do { backend = try options.backend(context) } catch let e as RunnerError {
        emit(RunResult.failure(e, runId: request.runId, template: templateName(request), backend: options.backend), presentation)
    } catch { fail(RunnerError(.internalError, "\(error)")) }
    if options.demo {
        do {
            // Validate before starting a server: bad input must not cost a dataset load.
            let probe = Executor(catalog: catalog, assembler: assembler, backend: backend, environment: env)
            _ = try probe.prepare(request)
            server = try PostHogLocalServer.start(locator: context.locator, environment: env)
            env.merge(server!.environment) { _, demo in demo }
        } catch let e as RunnerError {
            emit(RunResult.failure(RunnerError(e.kind, context.redactor.redact(e.message)), runId: request.runId,
                                   template: templateName(request), backend: options.backend), presentation)
        } catch {
            fail(RunnerError(.internalError, "\(error)"))
        }
    }
    var executor = Executor(catalog: catalog, assembler: assembler, backend: backend, environment: env)
    executor.outputLimit = options.outputLimit
    executor.postHogNetwork = options.network ?? .posthog

    let killer = ProcessKiller()
    let signals = killOnSignals(killer)
    // Progress: the driver's lines read from the live stderr, one updating line on a terminal.
    var progress: ProgressDisplay?
    if presentation.wantsProgress && times == 1 {
        let display = ProgressDisplay(label: templateName(request) ?? "script", redactor: context.redactor, environment: context.environment)
        request.progress = true
        request.onOutput = { fd, chunk in display.feed(fd, chunk) }
        display.begin()
        progress = display
    }
    var result = withPaths(await executor.run(request, killer: killer), request)
    progress?.end()
    var worst = result
    if times > 1 {
        // Repeated runs share the backend (a warm E2B pool is reused): one result per line.
        FileHandle.standardOutput.write(Data((result.jsonText(pretty: false) + "\n").utf8))
        for _ in 1..<times where !killer.cancelled {
            var again = request
            again.runId = RunRequest.newRunId()
            again.artifacts = files?.output(runId: again.runId, limits: options.artifactLimits)
            result = withPaths(await executor.run(again, killer: killer), again)
            FileHandle.standardOutput.write(Data((result.jsonText(pretty: false) + "\n").utf8))
            if !result.success && worst.success { worst = result }
        }
    } else {
        // The result is handed back first; the sandbox's kill (E2B) follows off the critical path.
        presentation.write(result)
    }
    signals.forEach { $0.cancel() }
    stopBackend(backend)
    server?.stop()
    finish(worst.exitStatus)
}

/// SIGINT and SIGTERM kill the sandbox (its run ends as cancelled) instead of the runner; cancel
/// the sources returned to restore nothing but stop listening.
func killOnSignals(_ killer: ProcessKiller) -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
        signal(sig, SIG_IGN)
        let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        src.setEventHandler { killer.kill(cancelling: true) }
        src.resume()
        return src
    }
}

/// Waits for the backend's pending cleanup (E2B kills) and says what could not be cleaned up.
func stopBackend(_ backend: any SandboxBackend) {
    for failure in (backend as? E2BBackend)?.shutdown() ?? [] {
        FileHandle.standardError.write(Data("warning: \(failure)\n".utf8))
    }
}

/// Prints the result (`Presentation.write`: exact JSON with `--json`; for a person the report,
/// or the JSON with the control characters a script could have printed escaped) and exits.
func emit(_ result: RunResult, _ presentation: Presentation) -> Never {
    presentation.write(result)
    finish(result.exitStatus)
}

/// The result with each artifact's host path (the CLI's own field).
func withPaths(_ result: RunResult, _ request: RunRequest) -> RunResult {
    guard let dir = request.artifacts?.openedDirectory, !result.artifacts.isEmpty else { return result }
    var r = result
    for i in r.artifacts.indices { r.artifacts[i].path = dir.path + "/" + r.artifacts[i].name }
    return r
}

/// Ends the process at once: everything was written with write(2) (FileHandle), and the sandbox,
/// the demo server and the pool are already stopped, so no exit handler has work left; skipping
/// them saves milliseconds on every CLI run.
func finish(_ status: Int32) -> Never {
    fflush(nil)  // every C stream (print() goes through stdout's buffer)
    _exit(status)
}

func templateName(_ request: RunRequest) -> String? {
    if case .template(let n, _) = request.source { return n }
    return nil
}

extension RunOptions {
    var timeoutDuration: Duration? { timeout.map { .seconds($0) } }
}
