"""The live feed: what each stream shows now, every event fanned out to its subscribers, and the
recent past kept for those that come back."""
