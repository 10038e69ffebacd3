"""Recovery drills: a scripted bad run against a team's stand-in tools, timed from the first call to the pause,
from the pause to the blast radius found, and from there to clean state (issue 15).

A team declares its stand-ins in its policy (`drill: {stand_ins: module:function}`) or on the command line
(`guard drill --team T --stand-ins module:function`): a function that takes the drill's `Guard`, registers stand-in
tools on it (each with the compensation that undoes it) and returns the bad run, a function of no arguments that
calls those tools until the team's brakes stop it. `run_drill` does the rest and keeps the times in the ledger.
"""

from guard.drills.drill import DrillFailed, DrillResult, StandIns, load_stand_ins, run_drill

__all__ = ["DrillFailed", "DrillResult", "StandIns", "load_stand_ins", "run_drill"]
