"""predict/tracking.py: ids across frames, faces that cross, smoothing over a window."""

import numpy as np
import pytest

from amobilenet_jax.predict.tracking import Tracker


def test_crossing_boxes_keep_their_ids_by_their_motion():
    """Two boxes on one row moving towards each other: at the crossing they overlap each other
    more than their own last boxes; the velocity keeps each id on its own box."""
    tracker = Tracker()
    seen = {}
    for step in range(11):
        t = step / 10
        a = (40.0 * step, 100.0, 60.0, 60.0)  # moving right
        b = (400.0 - 40.0 * step, 104.0, 60.0, 60.0)  # moving left
        order = [a, b] if step % 2 else [b, a]  # the detector's order says nothing
        for box, track in zip(order, tracker.update(t, order)):
            seen.setdefault(track, []).append(box[0])
    assert len(seen) == 2
    for xs in seen.values():
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True)


def test_a_track_ends_after_a_gap_and_a_new_face_gets_a_new_id():
    tracker = Tracker(max_gap_s=0.5)
    assert tracker.update(0.0, [(0, 0, 50, 50)]) == [0]
    assert tracker.update(0.1, [(2, 0, 50, 50), (300, 300, 50, 50)]) == [0, 1]
    assert tracker.update(1.0, [(2, 0, 50, 50)]) == [2]  # both ended: a new id


def test_smoothing_averages_a_track_over_its_window():
    tracker = Tracker(smooth_s=0.25)
    (track,) = tracker.update(0.0, [(0, 0, 50, 50)])
    first = tracker.smooth(track, 0.0, np.array([1.0, 0.0]))
    tracker.update(0.1, [(0, 0, 50, 50)])
    second = tracker.smooth(track, 0.1, np.array([0.0, 1.0]))
    tracker.update(0.4, [(0, 0, 50, 50)])
    third = tracker.smooth(track, 0.4, np.array([0.0, 1.0]))  # 0.0 and 0.1 fell out of the window
    assert first == pytest.approx([1, 0]) and second == pytest.approx([0.5, 0.5]) and third == pytest.approx([0, 1])
    assert Tracker().smooth(0, 0.0, np.array([0.3, 0.7])) == pytest.approx([0.3, 0.7])  # off: as given


def test_carried_faces_are_the_last_detected_ones_moved_on_by_their_velocity():
    tracker = Tracker()
    assert tracker.carried(0.0) == []  # nothing detected yet
    tracker.update(0.0, [(100, 50, 40, 40), (300, 50, 40, 40)])
    tracker.update(0.1, [(110, 50, 40, 40)])  # the second face was not found again
    (carried,) = tracker.carried(0.3)
    assert carried[0] == 0 and carried[1] == pytest.approx((130, 50, 40, 40))
    assert tracker.carried(0.3) == [carried]  # carrying leaves the tracks as they are
    tracker.update(0.4, [])
    assert tracker.carried(0.5) == []  # the last detection found no face


def test_a_frame_is_smoothed_after_a_later_frame_of_its_batch_ended_its_track():
    """predict assigns a batch's ids first and smooths afterwards."""
    tracker = Tracker(smooth_s=0.5, max_gap_s=0.5)
    (first,) = tracker.update(0.0, [(0, 0, 50, 50)])
    tracker.update(2.0, [(300, 300, 50, 50)])  # the first track has ended
    assert tracker.smooth(first, 0.0, np.array([1.0, 0.0])) == pytest.approx([1.0, 0.0])


def test_a_face_that_moved_most_of_its_width_between_detections_keeps_its_track():
    tracker = Tracker()
    ids = [tracker.update(0.2 * step, [(60.0 * step, 100.0, 70.0, 70.0)])[0] for step in range(5)]
    assert ids == [0] * 5  # 60 px per detection on a 70-px face: IoU 0.08 as they are, 0.4 grown
    assert tracker.update(1.0, [(600.0, 100.0, 70.0, 70.0)]) == [1]  # a face far from it is another


def test_a_held_face_is_carried_through_the_detectors_misses_until_its_hold_runs_out():
    tracker = Tracker(hold_s=0.3)
    tracker.update(0.0, [(100, 50, 40, 40), (300, 50, 40, 40)])
    tracker.update(0.1, [(110, 50, 40, 40), (300, 50, 40, 40)])
    tracker.update(0.2, [(300, 50, 40, 40)])  # the first face missed
    (held,) = tracker.held(0.2)
    assert held[0] == 0 and held[1] == pytest.approx((120, 50, 40, 40))  # moved on by its velocity
    # between detections both are carried: the one found and the one held
    assert {track for track, _ in tracker.carried(0.25)} == {0, 1}
    tracker.update(0.3, [(300, 50, 40, 40)])
    assert [track for track, _ in tracker.held(0.3)] == [0]  # 0.2 s since it was found
    tracker.update(0.5, [(300, 50, 40, 40)])
    assert tracker.held(0.5) == []  # 0.4 s: the hold ran out
    assert [track for track, _ in tracker.carried(0.55)] == [1]
    # found again within the hold, a held face keeps its id
    tracker = Tracker(hold_s=0.3)
    tracker.update(0.0, [(100, 50, 40, 40)])
    tracker.update(0.1, [])
    assert tracker.update(0.2, [(102, 50, 40, 40)]) == [0]
    # without a hold (the default) a missed face is neither held nor carried
    tracker = Tracker()
    tracker.update(0.0, [(100, 50, 40, 40)])
    tracker.update(0.1, [])
    assert tracker.held(0.1) == [] and tracker.carried(0.15) == []
