"""Playing games with text policies: the game loop that learning and evaluation share
(``rollout``), text agents and their sample functions (``agents``), and fixed opponents
(``opponents``: scripted players, frozen checkpoints, the league)."""
