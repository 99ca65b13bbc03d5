import json

values = {
    "days": {{ days }},
    "ratio": {{ ratio }},
    "label": {{ label }},
    "event": {{ event }},
    "mode": {{ mode }},
    "flag": {{ flag }},
    "since": {{ since }},
    "steps": {{ steps }},
    "who": {{who}},
}
print(json.dumps(values, sort_keys=True))
