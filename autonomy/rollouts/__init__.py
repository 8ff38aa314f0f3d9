"""Rollout in waves: a plan widens a group of agents wave by wave, each wave at its autonomy
level; promotion is proposed on measured health and carried out only through an approval,
and a tripped guard demotes the plan before the next action.

- ``selectors``: whom a plan reaches, the level it gives an agent (read by
  ``autonomy.levels.level_for``), and its figures against the next wave's criteria;
- ``services``: the one writer of a plan's wave (propose, settle a promotion, demote,
  measure);
- ``receivers``: the guards, on a failed action and a new drift flag.
"""
