import Foundation
import Testing
@testable import SandboxRunner

/// The views in the manifests: every built-in template declares one and it checks out against
/// its output schema; a view naming what the schema lacks makes the manifest an error.
@Suite("Template views")
struct ReportViewTests {
    @Test func everyBuiltInTemplateHasAValidView() throws {
        let catalog = TemplateCatalog(builtIn: Repo.locator.templatesDirectory)
        #expect(catalog.problems.isEmpty, "\(catalog.problems)")
        #expect(catalog.names.count == 14)
        for name in catalog.names {
            let view = try #require(catalog.templates[name]?.manifest.view, "\(name) has no view")
            #expect(!(view.headline ?? []).isEmpty || !(view.blocks ?? []).isEmpty, "\(name)'s view shows nothing")
        }
    }

    /// A copy of top_events whose manifest's view is replaced by `view` (JSON text).
    func templateDir(view: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("views-\(UUID().uuidString)")
        let t = dir.appendingPathComponent("top_events")
        try FileManager.default.createDirectory(at: t, withIntermediateDirectories: true)
        let source = Repo.locator.templatesDirectory.appendingPathComponent("top_events")
        try FileManager.default.copyItem(at: source.appendingPathComponent("template.py"), to: t.appendingPathComponent("template.py"))
        var manifest = try #require(JSONValue.parse(Data(contentsOf: source.appendingPathComponent("manifest.json")))?.objectValue)
        manifest["view"] = try #require(JSONValue.parse(Data(view.utf8)))
        try Data(JSONValue.object(manifest).jsonText().utf8).write(to: t.appendingPathComponent("manifest.json"))
        return dir
    }

    @Test(arguments: [
        (#"{"headline": [{"field": "total_event", "label": "Events"}]}"#, "total_event"),
        (#"{"blocks": [{"kind": "table", "title": "T", "path": "events", "columns": [{"field": "users", "label": "U"}, {"field": "uniq", "label": "X"}]}]}"#, "events[].uniq"),
        (#"{"blocks": [{"kind": "table", "title": "T", "path": "evnts", "columns": [{"field": "users", "label": "U"}]}]}"#, "evnts"),
        (#"{"blocks": [{"kind": "table", "title": "T", "path": "total_events", "columns": [{"field": "users", "label": "U"}]}]}"#, "not an array"),
        (#"{"blocks": [{"kind": "map", "title": "T", "path": "events", "columns": [{"field": "key", "label": "U"}]}]}"#, "not an object"),
        (#"{"blocks": [{"kind": "matrix", "title": "T", "path": "events", "row": {"field": "event", "label": "E"}, "size": {"field": "users", "label": "U"}}]}"#, "needs 'cells'"),
        (#"{"blocks": [{"kind": "matrix", "title": "T", "path": "events", "row": {"field": "event", "label": "E"}, "size": {"field": "users", "label": "U"}, "cells": "users"}]}"#, "not an array"),
        (#"{"headline": [{"field": "parameters", "label": "P"}]}"#, "is an object"),
        (#"{"blocks": [{"kind": "sankey", "title": "T", "path": "events"}]}"#, "not a valid manifest"),
    ])
    func aViewNamingWhatTheSchemaLacksIsAManifestError(view: String, mention: String) throws {
        let dir = try templateDir(view: view)
        defer { try? FileManager.default.removeItem(at: dir) }
        let catalog = TemplateCatalog(builtIn: nil, custom: [dir])
        #expect(catalog.templates["top_events"] == nil)
        #expect(catalog.problems.count == 1)
        #expect(catalog.problems.first?.contains(mention) == true, "\(catalog.problems)")
        let error = #expect(throws: RunnerError.self) { try catalog.template(named: "top_events") }
        #expect(error?.kind == .badInput)
        #expect(error?.message.contains(mention) == true, "\(error?.message ?? "")")
    }

    @Test func aViewThatChecksOutLoads() throws {
        let view = #"{"headline": [{"field": "parameters.days", "label": "Days", "unit": "days"}], "blocks": [{"kind": "series", "title": "T", "path": "events", "x": {"field": "event", "label": "E"}, "y": [{"field": "users", "label": "U"}]}]}"#
        let dir = try templateDir(view: view)
        defer { try? FileManager.default.removeItem(at: dir) }
        let catalog = TemplateCatalog(builtIn: nil, custom: [dir])
        #expect(catalog.problems.isEmpty, "\(catalog.problems)")
        #expect(catalog.templates["top_events"]?.manifest.view?.blocks?.first?.kind == .series)
    }
}
