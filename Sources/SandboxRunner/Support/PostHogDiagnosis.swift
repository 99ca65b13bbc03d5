import Foundation

/// What `doctor` finds about the PostHog the runs will use, in the categories an operator acts
/// on: `auth` (no key, a key PostHog refuses, no such project), `permission` (the key lacks
/// access to the project or a scope the runs need), `network` (PostHog cannot be reached),
/// `timeout` (it did not answer in time), `unknown` (anything else it answered). The message is
/// one sentence of ours: never a key, never a response body (PostHog's own `detail` only when it
/// names a missing scope, redacted).
public struct PostHogDiagnosis: Sendable, Equatable {
    public enum Category: String, Sendable, Codable, CaseIterable {
        case auth, permission, network, timeout, unknown
    }

    public var ok: Bool
    public var category: Category?
    public var message: String

    public var json: JSONValue {
        .object(["ok": .bool(ok), "category": category.map { .string($0.rawValue) } ?? .null, "message": .string(message)])
    }

    /// Two requests at most: the project (`GET /api/projects/{id}/`, project:read) and one HogQL
    /// `SELECT 1` (query:read, what every template and extraction needs; it counts against the
    /// key's query budget like any query).
    public static func check(environment env: [String: String], timeout: Duration = .seconds(5)) -> PostHogDiagnosis {
        let redactor = Redactor(environment: env)
        guard let key = env["POSTHOG_PERSONAL_API_KEY"], !key.isEmpty else {
            return PostHogDiagnosis(ok: false, category: .auth,
                                    message: "POSTHOG_PERSONAL_API_KEY is not set: create a personal API key in PostHog (project:read and "
                                        + "query:read scopes at least) and put it in the environment or .env, or use --demo.")
        }
        let base = (env["POSTHOG_API_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://us.posthog.com")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let url = ["us": "https://us.posthog.com", "eu": "https://eu.posthog.com"][base] ?? base
        let project = env["POSTHOG_PROJECT_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? "@current"
        let headers = ["Authorization": "Bearer \(key)", "Content-Type": "application/json"]

        func transportFailure(_ error: Error) -> PostHogDiagnosis {
            if let e = error as? HTTPError, e.timedOut {
                return PostHogDiagnosis(ok: false, category: .timeout,
                                        message: "\(url) did not answer within \(timeout.components.seconds) s: check PostHog's status and the network "
                                            + "(a proxy or firewall), or raise doctor's --timeout.")
            }
            let why = (error as? HTTPError).map { e in
                e.message.split(separator: ":").last.map { String($0).trimmingCharacters(in: .whitespaces) } ?? e.message
            } ?? "\(error)"
            return PostHogDiagnosis(ok: false, category: .network,
                                    message: redactor.redact("Cannot reach \(url) (\(why)): check POSTHOG_API_URL, DNS and the network."))
        }
        func refused(_ status: Int, _ body: [UInt8], what: String) -> PostHogDiagnosis {
            let detail = JSONValue.parse(Data(body))?["detail"]?.stringValue
            switch status {
            case 401:
                return PostHogDiagnosis(ok: false, category: .auth,
                                        message: "PostHog refused the personal API key (401): check POSTHOG_PERSONAL_API_KEY (a personal key, phx_…, "
                                            + "not the project key).")
            case 403:
                let scope = detail.flatMap { d in d.lowercased().contains("scope") ? redactor.redact(String(d.prefix(200))) : nil }
                return PostHogDiagnosis(ok: false, category: .permission,
                                        message: scope.map { "The key may not \(what) (403: \($0)): add that scope to the personal API key." }
                                            ?? "The key has no access to project \(project) (403): give it access, or check POSTHOG_PROJECT_ID.")
            case 404:
                return PostHogDiagnosis(ok: false, category: .auth,
                                        message: "PostHog has no project \(project) at \(url) (404): check POSTHOG_PROJECT_ID and POSTHOG_API_URL "
                                            + "(us or eu).")
            default:
                return PostHogDiagnosis(ok: false, category: .unknown,
                                        message: "\(url) answered HTTP \(status) when asked to \(what); try again later, or check PostHog's status.")
            }
        }

        let projectURL = url + "/api/projects/\(project)/"
        do {
            let r = try CurlHTTPClient.request(url: projectURL, headers: headers, timeout: timeout, connectTimeout: timeout)
            guard r.status == 200 else { return refused(r.status, r.body, what: "read project \(project)") }
        } catch {
            return transportFailure(error)
        }
        let body: JSONValue = .object(["query": .object(["kind": "HogQLQuery", "query": "SELECT 1"]), "refresh": "force_blocking"])
        do {
            let r = try CurlHTTPClient.request(method: "POST", url: projectURL + "query/", headers: headers, body: Array(body.jsonText().utf8),
                                               timeout: timeout, connectTimeout: timeout)
            guard r.status == 200 else { return refused(r.status, r.body, what: "run HogQL queries") }
        } catch {
            return transportFailure(error)
        }
        return PostHogDiagnosis(ok: true, category: nil, message: "\(url) answered; the key can read project \(project) and run HogQL queries.")
    }
}
