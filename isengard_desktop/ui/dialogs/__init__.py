"""Stand-alone dialogs used by several tabs: create character and confirmations.
Import the module you need (``create_character``, ``confirm``)."""
