import Foundation

/// The declared type of a template variable.
public enum VariableType: String, Codable, Sendable, CaseIterable {
    case integer, number, string, boolean, date, datetime
    case `enum`
    case stringList = "string_list"
    /// An event or property name: pattern-checked, safe to use as a HogQL property path.
    case identifier
    case identifierList = "identifier_list"
}

/// One variable a template declares: its type, bounds, default and description.
public struct VariableSpec: Codable, Sendable, Equatable {
    public var name: String
    public var type: VariableType
    public var description: String
    public var required: Bool?
    public var `default`: JSONValue?
    public var minimum: Double?
    public var maximum: Double?
    public var minLength: Int?
    public var maxLength: Int?
    public var pattern: String?
    public var values: [String]?
    public var minItems: Int?
    public var maxItems: Int?

    public var isRequired: Bool { required ?? (self.default == nil) }
}

/// A template's manifest (`Templates/<name>/manifest.json`).
public struct TemplateManifest: Codable, Sendable, Equatable {
    public var name: String
    public var title: String?
    public var description: String
    /// False when the template writes to PostHog (creates a cohort, captures events).
    public var readOnly: Bool?
    /// True when the template talks to PostHog (the jail then shares the host network).
    public var needsPostHog: Bool?
    public var variables: [VariableSpec]
    /// One example set of variables, used by `smoke`.
    public var example: [String: JSONValue]?
    /// JSON Schema of the document the template prints.
    public var output: JSONValue?
    /// Default wall-clock timeout in seconds.
    public var timeoutSeconds: Int?
    /// How the answer is shown to a person (terminal, HTML report); checked against `output` at load.
    public var view: TemplateView?

    public var isReadOnly: Bool { readOnly ?? true }
    public var usesPostHog: Bool { needsPostHog ?? true }
}

/// A template found in a catalog directory.
public struct Template: Sendable, Equatable {
    public var manifest: TemplateManifest
    public var script: String
    public var directory: URL
    /// True for the operator's own templates (not shipped with sandbox-runner).
    public var isCustom: Bool

    public var name: String { manifest.name }
}
