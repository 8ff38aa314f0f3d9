"""The compliance page's period: a quarter from the picker, or inclusive from/to days."""

from django import forms

from compliance import periods
from compliance.models import Framework


class PeriodForm(forms.Form):
    quarter = forms.CharField(required=False, max_length=8)
    start = forms.DateField(required=False, label="From")
    end = forms.DateField(required=False, label="To")
    framework = forms.ChoiceField(
        required=False, choices=[("", "All frameworks"), *Framework.choices]
    )

    def clean(self):
        cleaned = super().clean()
        start, end, quarter = cleaned.get("start"), cleaned.get("end"), cleaned.get("quarter")
        try:
            if start or end:
                if not (start and end):
                    raise ValueError("give both a first and a last day")
                cleaned["period"] = periods.days(start, end)
            elif quarter:
                cleaned["period"] = periods.quarter(quarter)
            else:
                cleaned["period"] = periods.current_quarter()
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned
