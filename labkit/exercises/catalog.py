"""The course's exercises, in course order: the one registry ``check``/``hint``/``solution`` read.

Owns only the order and the ids; the content lives in ``course_basics`` (notebooks 01–03:
pods, pod-to-pod, Services) and ``course_policies`` (04–05: NetworkPolicies) and ``course_challenge`` (06).
"""
from __future__ import annotations

from labkit.exercises.core import Exercise
from labkit.exercises.course_basics import BASIC_EXERCISES
from labkit.exercises.course_challenge import THREE_TIER
from labkit.exercises.course_policies import POLICY_EXERCISES

EXERCISES: dict[str, Exercise] = {e.id: e for e in (*BASIC_EXERCISES, *POLICY_EXERCISES, THREE_TIER)}
