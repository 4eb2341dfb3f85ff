"""The extra variables AWX gives a job launched from a job template with a survey.

AWX (SurveyJobTemplateMixin) starts from the template's extra_vars, adds each question's default
that is valid for its type, then the launch's answers. It accepts an answer only for a question the
survey asks, of the question's type: a text answer is a string (a list is "a,b"), an integer
answer an int, a multiple choice one of the choices. A required question must be answered.
"""

from __future__ import annotations


def _valid(question, value):
    kind = question["type"]
    if kind in ("text", "textarea", "password"):
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "multiplechoice":
        return value in question["choices"]
    raise ValueError(f"survey question type {kind} is not modelled here")


def launch_extra_vars(template, answers):
    """extra_vars of a job launched from `template` with the survey `answers`; raises as AWX refuses."""
    questions = {q["variable"]: q for q in template["survey_spec"]["spec"]}
    unasked = set(answers) - set(questions)
    if unasked:
        raise ValueError(f"{template['name']} does not ask for {sorted(unasked)}")
    extra_vars = dict(template["extra_vars"])
    for name, question in questions.items():
        if question.get("default") is not None and _valid(question, question["default"]):
            extra_vars[name] = question["default"]
        if name in answers:
            if not _valid(question, answers[name]):
                raise ValueError(f"{name}: {answers[name]!r} is not a valid {question['type']} answer")
            extra_vars[name] = answers[name]
        elif question["required"]:
            raise ValueError(f"{template['name']} requires an answer for {name}")
    return extra_vars
