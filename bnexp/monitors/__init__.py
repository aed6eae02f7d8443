"""Diagnostics that watch training (Trainer callbacks), one module per option of conf/monitor/:

  activations  Ioffe & Szegedy 2015, Fig. 1b-c   activations.py
  ics          Santurkar et al. 2018, Fig. 3     ics.py
  landscape    Santurkar et al. 2018, Fig. 4     landscape.py
"""
