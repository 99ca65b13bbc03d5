import Foundation

/// An error the runner reports to its user: a kind from the one error vocabulary (README, "Errors")
/// and a full sentence saying what failed and what to do. Never holds a secret.
///
/// The sentence may name a caller's parameter (a variable, the timeout): it is kept as a `Phrase`
/// whose parameter parts each surface spells in its own terms, `--var days=…` on the CLI,
/// `variables.days` over HTTP, the argument `days` over MCP.
public struct RunnerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The one error vocabulary: each kind has one CLI exit code, one HTTP status and one MCP form.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Bad input: bad variable, bad flag, malformed body. Exit 64, HTTP 400, MCP `isError` result.
        case badInput
        /// No such template, run or route. Exit 64, HTTP 404, MCP `isError` result (an unknown tool
        /// stays a JSON-RPC error).
        case notFound
        /// No or wrong bearer token (HTTP only). HTTP 401.
        case unauthorized
        /// The HTTP method is not one the route has. HTTP 405 with `Allow`.
        case methodNotAllowed
        /// The body or script is over its size limit. Exit 64, HTTP 413, MCP `isError` result.
        case tooLarge
        /// Too many runs in progress and queued. Exit 75, HTTP 429 with `Retry-After`, MCP `isError` result.
        case rateLimited
        /// The sandbox could not be had: jail cannot start, E2B unreachable, server shutting down.
        /// Exit 69, HTTP 503, MCP `isError` result.
        case unavailable
        /// The script ran and failed. Exit 1, HTTP 200 (a result document), MCP `isError` result.
        case scriptFailed
        /// The run hit its timeout. Exit 124, HTTP 200 (a result document), MCP `isError` result.
        case timeout
        /// The run was cancelled (SIGINT/SIGTERM, DELETE, MCP cancellation, client gone): its sandbox
        /// was killed. Exit 130, HTTP 200 (a result document), MCP: no answer (the caller cancelled).
        case cancelled
        /// Something inside the runner failed. Exit 70, HTTP 500, MCP `isError` result.
        case internalError = "internal"

        /// The CLI's exit status (sysexits, timeout(1), 128+SIGINT).
        public var exitCode: Int32 {
            switch self {
            case .badInput, .notFound, .tooLarge, .unauthorized, .methodNotAllowed: return 64
            case .rateLimited: return 75
            case .unavailable: return 69
            case .scriptFailed: return 1
            case .timeout: return 124
            case .cancelled: return 130
            case .internalError: return 70
            }
        }

        /// The HTTP status of a response that carries this kind as an `Error` document. Runs that
        /// happened (scriptFailed, timeout, cancelled) answer 200 with their result document.
        public var httpStatus: Int {
            switch self {
            case .badInput: return 400
            case .unauthorized: return 401
            case .notFound: return 404
            case .methodNotAllowed: return 405
            case .tooLarge: return 413
            case .rateLimited: return 429
            case .unavailable: return 503
            case .scriptFailed, .timeout, .cancelled: return 200
            case .internalError: return 500
            }
        }

        /// True when the run reached a sandbox and the answer is its result document.
        public var isRunOutcome: Bool { [.scriptFailed, .timeout, .cancelled].contains(self) }
    }

    /// Who the sentence is for: each names parameters in its own terms.
    public enum Surface: String, Sendable, Codable {
        case cli, http, mcp
    }

    /// A caller's parameter an error is about.
    public enum Parameter: Sendable, Equatable, Hashable {
        /// A template variable.
        case variable(String)
        /// The wall-clock limit.
        case timeout
        /// The ad hoc script's source.
        case script
        /// The template's name.
        case template

        /// The parameter as the surface's caller writes it: `--var days`, `variables.days`, `days`.
        public func spelled(for surface: Surface) -> String {
            switch (self, surface) {
            case (.variable(let n), .cli): return "--var \(n)"
            case (.variable(let n), .http): return "variables.\(n)"
            case (.variable(let n), .mcp): return n
            case (.timeout, .cli): return "--timeout"
            case (.timeout, _): return "timeoutSeconds"
            case (.script, .cli): return "the script file"
            case (.script, _): return "script"
            case (.template, .cli): return "the template name"
            case (.template, _): return "template"
            }
        }

        /// The JSON field (HTTP) or argument (MCP) it is; nil on the CLI.
        public func field(for surface: Surface) -> String? {
            surface == .cli ? nil : spelled(for: surface)
        }

        /// The subject of a sentence about it: "Variable 'days'", "Field 'variables.days'", "Argument 'days'".
        func subject(for surface: Surface) -> String {
            switch (self, surface) {
            case (.variable(let n), .cli): return "Variable '\(n)'"
            case (_, .cli): return spelled(for: .cli)
            case (_, .http): return "Field '\(spelled(for: .http))'"
            case (_, .mcp): return "Argument '\(spelled(for: .mcp))'"
            }
        }

        /// How to give it a value: "--var days=…", "variables.days", "the argument days".
        func howToPass(for surface: Surface) -> String {
            switch (self, surface) {
            case (.variable(let n), .cli): return "--var \(n)=…"
            case (_, .cli): return spelled(for: .cli)
            case (_, .http): return spelled(for: .http)
            case (_, .mcp): return "the argument \(spelled(for: .mcp))"
            }
        }
    }

    /// A sentence with parameter references that each surface spells in its own terms. Write it
    /// as an interpolated literal: `"\(subject: .variable("days")) must be an integer."`.
    public struct Phrase: Sendable, Equatable, ExpressibleByStringInterpolation {
        enum Part: Sendable, Equatable {
            case text(String)
            case subject(Parameter)
            case pass(Parameter)
            case name(Parameter)
        }

        var parts: [Part]

        public init(stringLiteral value: String) { parts = [.text(value)] }
        public init(stringInterpolation: Interpolation) { parts = stringInterpolation.parts }
        public init(_ text: String) { parts = [.text(text)] }

        public struct Interpolation: StringInterpolationProtocol {
            var parts: [Part] = []
            public init(literalCapacity: Int, interpolationCount: Int) {}
            public mutating func appendLiteral(_ literal: String) { parts.append(.text(literal)) }
            public mutating func appendInterpolation(_ value: some CustomStringConvertible) { parts.append(.text(value.description)) }
            /// "Variable 'days'" / "Field 'variables.days'" / "Argument 'days'".
            public mutating func appendInterpolation(subject p: Parameter) { parts.append(.subject(p)) }
            /// "--var days=…" / "variables.days" / "the argument days".
            public mutating func appendInterpolation(pass p: Parameter) { parts.append(.pass(p)) }
            /// "--timeout" / "timeoutSeconds".
            public mutating func appendInterpolation(name p: Parameter) { parts.append(.name(p)) }
        }

        public func text(for surface: Surface) -> String {
            parts.map { part in
                switch part {
                case .text(let t): return t
                case .subject(let p): return p.subject(for: surface)
                case .pass(let p): return p.howToPass(for: surface)
                case .name(let p): return p.spelled(for: surface)
                }
            }.joined()
        }

        /// Applies `transform` to the literal text only (redaction): parameter names stay as they are.
        public func mapText(_ transform: (String) -> String) -> Phrase {
            var copy = self
            copy.parts = parts.map { if case .text(let t) = $0 { return .text(transform(t)) } else { return $0 } }
            return copy
        }
    }

    public var kind: Kind
    public var phrase: Phrase
    /// The parameter the error is about, when it is about one (its field over HTTP and MCP).
    public var parameter: Parameter?

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.phrase = Phrase(message)
    }

    public init(_ kind: Kind, phrase: Phrase, parameter: Parameter? = nil) {
        self.kind = kind
        self.phrase = phrase
        self.parameter = parameter
    }

    /// The sentence in the CLI's terms (flags).
    public var message: String { phrase.text(for: .cli) }

    /// The sentence in a surface's terms.
    public func message(for surface: Surface) -> String { phrase.text(for: surface) }

    public var description: String { message }

    public var exitCode: Int32 { kind.exitCode }
}

extension RunnerError.Phrase {
    public static func + (lhs: Self, rhs: Self) -> Self {
        var out = lhs
        out.parts += rhs.parts
        return out
    }
}
