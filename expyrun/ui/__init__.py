"""The runs viewer (`expyrun ui`, SPEC 11.3): a read-only web page on 127.0.0.1 over the runs below a
folder. Imported only by `expyrun ui` (`commands/ui.py`): a launch never pays for it."""
