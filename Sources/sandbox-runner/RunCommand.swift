import ArgumentParser
import Foundation
import SandboxRunner

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a template in a sandbox and print its result document.",
        discussion: "Example: sandbox-runner run identify_churn_risk --var inactive_days=14 --demo"
    )

    @Argument(help: "The template's name (see `sandbox-runner list`).", completion: Completion.templateNames)
    var name: String

    @Option(name: .customLong("var"), help: ArgumentHelp("A variable as name=value (repeatable).", valueName: "name=value"),
            completion: Completion.variables)
    var variables: [String] = []

    @Option(name: .customLong("vars-json"), help: ArgumentHelp("Variables as one JSON object.", valueName: "json"))
    var variablesJSON: String?

    @OptionGroup var options: RunOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var files: OutputDirectoryOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func validate() throws { try output.check(json: options.json) }

    func parsedInputs() throws -> [String: VariableInput] {
        var inputs: [String: VariableInput] = [:]
        if let text = variablesJSON {
            guard case .object(let obj)? = JSONValue.parse(Data(text.utf8)) else {
                throw ValidationError("--vars-json must be a JSON object such as {\"days\": 7}.")
            }
            for (k, v) in obj { inputs[k] = .json(v) }
        }
        for item in variables {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ValidationError("--var takes name=value; got '\(item)'.")
            }
            let key = String(item[..<eq])
            guard inputs[key] == nil else { throw ValidationError("Variable '\(key)' is given twice.") }
            inputs[key] = .text(String(item[item.index(after: eq)...]))
        }
        return inputs
    }

    func run() async throws {
        let context = try Context.load()
        let catalog = catalogOptions.catalog(context)
        var request = RunRequest(source: .template(name: name, inputs: try parsedInputs()), timeout: options.timeoutDuration)
        request.artifacts = files.output(runId: request.runId, limits: options.artifactLimits)
        await performRun(request, options: options, output: output, catalog: catalog, context: context, files: files)
    }
}

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run an ad hoc Python script in a sandbox, with the same result document as `run`.",
        discussion: "The script can `import posthog_driver`. Use - to read it from stdin."
    )

    @Argument(help: "The script (a .py file, or - for stdin).", completion: .file(extensions: ["py"]))
    var file: String

    @Option(help: ArgumentHelp("Run it N times in a row on one backend (a warm E2B pool is reused); prints one result per line.", valueName: "N"))
    var `repeat`: Int = 1

    @OptionGroup var options: RunOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var files: OutputDirectoryOptions

    func validate() throws {
        try output.check(json: options.json)
        if `repeat` > 1 && ((output.format ?? .json) != .json || output.report != nil) {
            throw ValidationError("--repeat prints one result document per line; it takes neither --format table/csv nor --report.")
        }
    }

    func run() async throws {
        let context = try Context.load()
        let source: String
        if file == "-" {
            source = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file) else {
                fail(RunnerError(.badInput, "Cannot read the script \(file)."))
            }
            source = String(decoding: data, as: UTF8.self)
        }
        // The script's own network (--network): posthog with --demo, else none.
        let net = options.network ?? (options.demo ? .posthog : NetworkPolicy.none)
        var request = RunRequest(source: .script(source: source, label: URL(fileURLWithPath: file).lastPathComponent),
                                 timeout: options.timeoutDuration, network: net)
        request.artifacts = files.output(runId: request.runId, limits: options.artifactLimits)
        guard (1...1000).contains(`repeat`) else { fail(RunnerError(.badInput, "--repeat must be between 1 and 1000.")) }
        await performRun(request, options: options, output: output, catalog: TemplateCatalog(builtIn: nil), context: context, repeat: `repeat`,
                         files: files)
    }
}

extension NetworkPolicy: ExpressibleByArgument {}
