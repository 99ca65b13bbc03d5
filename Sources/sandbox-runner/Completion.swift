import ArgumentParser
import Foundation
import SandboxRunner

/// Shell completion of template names and of their variables (bash, zsh and fish scripts come
/// from swift-argument-parser: `sandbox-runner --generate-completion-script bash`). The shells
/// call the binary back when completing, so the operator's own templates complete too.
enum Completion {
    /// The catalog as the command line being completed would see it (`--templates-dir` and
    /// SANDBOX_RUNNER_TEMPLATES included); nil when the shipped files cannot be found.
    static func catalog(_ words: [String]) -> TemplateCatalog? {
        let env = DotEnv.environment(loadingFrom: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        guard let locator = try? ResourceLocator.locate(environment: env) else { return nil }
        var dirs: [String] = []
        for (i, w) in words.enumerated() {
            if w == "--templates-dir", i + 1 < words.count { dirs.append(words[i + 1]) }
            if w.hasPrefix("--templates-dir=") { dirs.append(String(w.dropFirst("--templates-dir=".count))) }
        }
        if let extra = env["SANDBOX_RUNNER_TEMPLATES"], !extra.isEmpty { dirs += extra.split(separator: ":").map(String.init) }
        return TemplateCatalog(builtIn: locator.templatesDirectory, custom: dirs.map { URL(fileURLWithPath: $0) })
    }

    /// Every template's name.
    static let templateNames: CompletionKind = .custom { words, _, prefix in
        (catalog(words)?.names ?? []).filter { $0.hasPrefix(prefix) }
    }

    /// `name=` for each variable of the template named on the line; `name=value` for the values
    /// of an enum or boolean once its name is typed.
    static let variables: CompletionKind = .custom { words, index, prefix in
        guard let catalog = catalog(words) else { return [] }
        // The template is the first word after `run` that is no option nor an option's value.
        var name: String?
        if let run = words.firstIndex(of: "run") {
            var i = run + 1
            let valued: Set<String> = ["--var", "--vars-json", "--backend", "--warm-pool", "--timeout", "--memory", "--output-limit",
                                       "--format", "--report", "--templates-dir"]
            while i < words.count {
                let w = words[i]
                if i != index, !w.hasPrefix("-"), catalog.templates[w] != nil { name = w; break }
                i += valued.contains(w) ? 2 : 1
            }
        }
        guard let name, let manifest = catalog.templates[name]?.manifest else { return [] }
        var out: [String] = []
        for v in manifest.variables {
            if let eq = prefix.firstIndex(of: "="), prefix[..<eq] == v.name {
                let values = v.type == .boolean ? ["true", "false"] : (v.values ?? [])
                out += values.map { "\(v.name)=\($0)" }
            } else {
                out.append("\(v.name)=")
            }
        }
        return out.filter { $0.hasPrefix(prefix) }
    }
}
