import Foundation

/// An error the runner reports to its user: a kind that maps to an exit code, and a full
/// sentence saying what failed and what to do. Never holds a secret.
public struct RunnerError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// Bad input: unknown template, bad variable, bad flag. Exit 64.
        case badInput
        /// The sandbox could not be had: jail cannot start, E2B unreachable. Exit 69.
        case unavailable
        /// The script ran and failed. Exit 1.
        case scriptFailed
        /// The run hit its timeout. Exit 124.
        case timeout
        /// Something inside the runner failed (I/O, a helper process). Exit 70.
        case internalError
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public var exitCode: Int32 {
        switch kind {
        case .badInput: return 64
        case .unavailable: return 69
        case .scriptFailed: return 1
        case .timeout: return 124
        case .internalError: return 70
        }
    }
}
