"""Text for people, shared by every way a run is shown (list, show, a study's best line): values
and aligned tables, below browse/ and track/ so both take them without an arrow running back up."""
